//! The kinds the operator reconciles, listed once.
//!
//! Everything that is done "for every kind" (the CRDs, the controllers, readiness, `status`,
//! `reconcile`, `plan`, the plural names) goes through [`each_kind`], as ACK's
//! `service_controller.go` loops over the resource managers it registered. A new kind is its
//! three files (`api/`, `reconcile/`, `controller/kinds/`) and one line in [`each_kind`];
//! `tests/deploy.rs` checks `deploy/` (RBAC, chart, Argo CD health, dashboard) against
//! [`names`].

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use super::kind::ManagedKind;
use crate::api::{DesktopMaintenanceWindow, FotaTaskPolicy, ImageShare, OtaSchedule, UpdateRollout};

/// Something done once per kind: [`each_kind`] calls `visit::<K>()` for every kind, in
/// registration order. Async work returns a boxed future as its output.
pub trait EachKind {
    type Output;
    fn visit<K: ManagedKind>(&mut self) -> Self::Output;
}

/// The registry: one line per kind, in the order `status`, the CRD files and `plan` list them.
pub fn each_kind<V: EachKind>(v: &mut V) -> Vec<V::Output> {
    vec![
        v.visit::<FotaTaskPolicy>(),
        v.visit::<DesktopMaintenanceWindow>(),
        v.visit::<ImageShare>(),
        v.visit::<OtaSchedule>(),
        v.visit::<UpdateRollout>(),
    ]
}

/// How a kind is named: its `kind`, and the plural of its REST path (`imageshares`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindName {
    pub kind: &'static str,
    pub plural: String,
}

impl KindName {
    /// Whether `text` names this kind as kubectl accepts it: `ImageShare`, `imageshare`,
    /// `imageshares` or `imageshares.ops.alicloud.dev`.
    pub fn is_named_by(&self, text: &str) -> bool {
        let text = text.to_ascii_lowercase();
        text == self.kind.to_ascii_lowercase()
            || text == self.plural
            || text.strip_suffix(&format!(".{}", crate::api::GROUP)) == Some(self.plural.as_str())
    }
}

struct Names;

impl EachKind for Names {
    type Output = KindName;
    fn visit<K: ManagedKind>(&mut self) -> KindName {
        KindName {
            kind: K::KIND,
            plural: K::plural(&()).into_owned(),
        }
    }
}

/// The registered kinds' names, in registration order.
pub fn names() -> Vec<KindName> {
    each_kind(&mut Names)
}

/// The registered kind that `text` names as kubectl would accept it (see [`KindName::is_named_by`]).
pub fn find(text: &str) -> Option<KindName> {
    names().into_iter().find(|n| n.is_named_by(text))
}

/// "A, B, C or D": the kinds, for error messages.
pub fn listed() -> String {
    let kinds: Vec<&str> = names().iter().map(|n| n.kind).collect();
    match kinds.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => kinds.join(""),
    }
}

struct Crds;

impl EachKind for Crds {
    type Output = CustomResourceDefinition;
    fn visit<K: ManagedKind>(&mut self) -> CustomResourceDefinition {
        K::crd()
    }
}

/// Every CRD, in registration order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    each_kind(&mut Crds)
}

/// The CRD of the kind called `kind` (exactly, as in a manifest's `kind:`).
pub fn crd_of(kind: &str) -> Option<CustomResourceDefinition> {
    crds().into_iter().find(|c| c.spec.names.kind == kind)
}

/// Runs `visitor` for the one kind called `kind` (exactly, as `K::KIND`), if it is registered.
pub fn visit_kind<V: EachKind>(kind: &str, visitor: &mut V) -> Option<V::Output> {
    struct Only<'a, V> {
        kind: &'a str,
        inner: &'a mut V,
    }
    impl<V: EachKind> EachKind for Only<'_, V> {
        type Output = Option<V::Output>;
        fn visit<K: ManagedKind>(&mut self) -> Self::Output {
            (K::KIND == self.kind).then(|| self.inner.visit::<K>())
        }
    }
    each_kind(&mut Only { kind, inner: visitor })
        .into_iter()
        .flatten()
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_named_as_its_crd_names_it() {
        let crds = crds();
        assert_eq!(names().len(), crds.len());
        for (n, crd) in names().iter().zip(&crds) {
            assert_eq!(n.kind, crd.spec.names.kind, "ManagedKind::KIND is the CRD's kind");
            assert_eq!(n.plural, crd.spec.names.plural);
        }
    }

    #[test]
    fn kinds_are_found_as_kubectl_names_them() {
        let found = |t: &str| find(t).map(|n| n.kind);
        assert_eq!(found("imageshare"), Some("ImageShare"));
        assert_eq!(found("ImageShares"), Some("ImageShare"));
        assert_eq!(found("otaschedules.ops.alicloud.dev"), Some("OtaSchedule"));
        assert_eq!(found("otaschedules.example.com"), None);
        assert_eq!(found("FotaTaskPolicy"), Some("FotaTaskPolicy"));
        assert_eq!(found("pods"), None);
        assert_eq!(
            listed(),
            "FotaTaskPolicy, DesktopMaintenanceWindow, ImageShare, OtaSchedule or UpdateRollout"
        );
    }

    /// `kubectl get alicloud-ops` lists every kind: the demo and the e2e suite rely on it
    /// instead of a list of kinds.
    #[test]
    fn every_kind_is_in_the_alicloud_ops_category() {
        for crd in crds() {
            let categories = crd.spec.names.categories.clone().unwrap_or_default();
            assert_eq!(categories, ["alicloud-ops"], "{}", crd.spec.names.kind);
        }
    }

    #[test]
    fn one_kind_is_visited_by_name() {
        assert_eq!(
            visit_kind("OtaSchedule", &mut Names).map(|n| n.plural),
            Some("otaschedules".into())
        );
        assert_eq!(visit_kind("Pod", &mut Names), None);
    }
}
