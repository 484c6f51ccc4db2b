package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

// RBAC for the template revisions: read through the cache, created and pruned here; never updated (a revision
// is immutable) and never read one by one.
// +kubebuilder:rbac:groups=apps,resources=controllerrevisions,verbs=list;watch;create;delete

// errRevisionNotCached: the revision to create exists, but the cache has not seen it yet; look again shortly.
var errRevisionNotCached = errors.New("the template's revision exists but is not in the cache yet")

// HistoryLimit is how many revisions of a template are remembered, current and stable included. Like a
// Deployment's default revisionHistoryLimit: each revision is a whole spec that every replica compiles and keeps
// in memory to recognise pods carrying it, and ten revisions of a template changed every week or two cover the
// manifests a team renders offline and re-applies (GitOps) for months. A pod whose sidecar is older than that
// is a conflict until its workload is rendered again.
const HistoryLimit = 10

// History is what the controller knows of a template's revisions after syncing them.
type History struct {
	// Current and Stable are revision numbers (status.currentRevision, status.stableRevision).
	Current, Stable int64
	// ByHash numbers the remembered revisions by the hash pods record.
	ByHash map[string]int64
}

// canaryRunning reports whether the template holds its newest revision back from some pods.
func canaryRunning(t *v1alpha1.SidecarTemplate) bool {
	up := t.Spec.UpdatePolicy
	return up != nil && up.Canary != nil && (up.Canary.Percent == nil || *up.Canary.Percent < 100)
}

// revisionsOf lists the ControllerRevisions of this very template (by owner UID), newest first: their names,
// numbers and hash labels, from the store when there is one (what the webhook holds anyway), else from the
// cache's list of the namespace's template revisions. Neither needs a cache index by owner (a set per template).
func (r *TemplateReconciler) revisionsOf(ctx context.Context, t *v1alpha1.SidecarTemplate) ([]appsv1.ControllerRevision, error) {
	var out []appsv1.ControllerRevision
	if r.Templates != nil {
		for _, h := range r.Templates.History(t.Namespace, t.Name, t.UID) {
			out = append(out, appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Namespace: t.Namespace, Name: h.Name,
				Labels: map[string]string{v1alpha1.LabelTemplateRevision: h.Hash}}, Revision: h.Number})
		}
	} else {
		var list appsv1.ControllerRevisionList
		// Read only (their names, numbers and labels): the cache's objects are not copied.
		if err := r.Client.List(ctx, &list, client.InNamespace(t.Namespace), client.HasLabels{v1alpha1.LabelTemplateRevision},
			client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("list revisions of %s/%s: %w", t.Namespace, t.Name, err)
		}
		for _, cr := range list.Items {
			if key, uid, ok := store.RevisionOwner(&cr); ok && key.Name == t.Name && uid == t.UID {
				out = append(out, cr)
			}
		}
	}
	slices.SortFunc(out, func(a, b appsv1.ControllerRevision) int { return cmp.Compare(b.Revision, a.Revision) })
	return out, nil
}

// syncRevisions makes sure the template's current spec (hash) is a revision, decides the stable one, and prunes
// the history to HistoryLimit. The stable revision is remembered in the template's status: it is observed state
// that only this controller decides, every replica's cache of templates carries it with the spec it goes with,
// and the revisions themselves stay immutable. Without a canary running the current revision is the stable one.
// Its writes are part of the reconcile's unit of work (unit).
func (r *TemplateReconciler) syncRevisions(ctx context.Context, t *v1alpha1.SidecarTemplate, hash string, unit *writeUnit) (History, error) {
	revs, err := r.revisionsOf(ctx, t)
	if err != nil {
		return History{}, err
	}
	h := History{ByHash: map[string]int64{}}
	for _, cr := range revs {
		if hh := cr.Labels[v1alpha1.LabelTemplateRevision]; hh == hash {
			h.Current = cr.Revision
		} else if _, dup := h.ByHash[hh]; !dup {
			h.ByHash[hh] = cr.Revision
		}
	}
	if h.Current == 0 {
		if h.Current, err = r.createRevision(ctx, t, hash, revs, unit); err != nil {
			return History{}, err
		}
		// A new revision goes first: pruning below keeps the newest.
		revs = append([]appsv1.ControllerRevision{{}}, revs...)
		revs[0].Revision, revs[0].Labels = h.Current, map[string]string{v1alpha1.LabelTemplateRevision: hash}
	}
	h.ByHash[hash] = h.Current
	h.Stable = h.Current
	if canaryRunning(t) && t.Status.StableRevision != 0 && slices.ContainsFunc(revs, func(cr appsv1.ControllerRevision) bool {
		return cr.Revision == t.Status.StableRevision
	}) {
		h.Stable = t.Status.StableRevision
	}
	if err := r.prune(ctx, revs, h, unit); err != nil {
		return History{}, err
	}
	return h, nil
}

// createRevision writes the revision of t's current spec, numbered one above the newest; it returns the number.
func (r *TemplateReconciler) createRevision(ctx context.Context, t *v1alpha1.SidecarTemplate, hash string, revs []appsv1.ControllerRevision, unit *writeUnit) (int64, error) {
	number := int64(1)
	if len(revs) > 0 {
		number = revs[0].Revision + 1
	}
	cr, err := store.NewRevision(t, number, hash)
	if err != nil {
		return 0, err
	}
	if err := unit.wait(ctx); err != nil {
		return 0, err
	}
	if err := r.Client.Create(ctx, cr); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return 0, errRevisionNotCached
		}
		return 0, fmt.Errorf("create revision %d of %s/%s: %w", number, t.Namespace, t.Name, err)
	}
	return number, nil
}

// prune deletes the oldest revisions beyond HistoryLimit, never the current or the stable one. revs is newest
// first.
func (r *TemplateReconciler) prune(ctx context.Context, revs []appsv1.ControllerRevision, h History, unit *writeUnit) error {
	for _, cr := range PruneList(revs, h) {
		if err := unit.wait(ctx); err != nil {
			return err
		}
		if err := r.Client.Delete(ctx, &cr); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("prune revision %d (%s): %w", cr.Revision, cr.Name, err)
		}
		for hh, n := range h.ByHash {
			if n == cr.Revision {
				delete(h.ByHash, hh)
			}
		}
	}
	return nil
}

// PruneList returns the revisions to delete: of revs (newest first), all but the newest HistoryLimit, keeping
// the current and the stable revision whatever their age.
func PruneList(revs []appsv1.ControllerRevision, h History) []appsv1.ControllerRevision {
	var out []appsv1.ControllerRevision
	kept := 0
	for _, cr := range revs {
		if cr.Revision == h.Current || cr.Revision == h.Stable {
			kept++
		}
	}
	for _, cr := range revs {
		if cr.Revision == h.Current || cr.Revision == h.Stable {
			continue
		}
		if kept < HistoryLimit {
			kept++
			continue
		}
		out = append(out, cr)
	}
	return out
}

// podsPerRevision renders the status line for kubectl get -o wide: "3=10,2=4", newest first.
func podsPerRevision(revs []v1alpha1.RevisionPods) string {
	parts := make([]string, len(revs))
	for i, rp := range revs {
		parts[i] = strconv.FormatInt(rp.Revision, 10) + "=" + strconv.FormatInt(int64(rp.Pods), 10)
	}
	return strings.Join(parts, ",")
}
