//! The leader's own check of its Lease, beside the lease manager.
//!
//! The lease manager says "leader" until it sees another holder. A leader that cannot renew
//! (the apiserver is out of its reach) keeps believing it leads while a standby, which can
//! reach the apiserver, takes the expired Lease over. This watchdog reads the Lease every
//! few seconds and keeps the write gate closed while the last renewal it saw has expired
//! (or the Lease names another holder), so that no write of the old leader overlaps the new
//! one's.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::cloud::gate::WriteGate;

/// How often the Lease is read.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// The gate closes this long before the Lease expires, for clock skew and a write in flight.
pub const MARGIN: chrono::Duration = chrono::Duration::seconds(2);

/// The field manager of one replica's writes to the Lease. It names the replica: a claim of
/// a free Lease is a server-side apply of `holderIdentity`, and only an apply by another
/// manager conflicts with it. Were every replica one manager, two replicas that both saw the
/// Lease free would both claim it without a conflict, and both lead.
pub fn lease_field_manager(identity: &str) -> String {
    format!("{}-lease-{identity}", crate::controller::context::FIELD_MANAGER)
}

/// The lease manager of one replica: a Lease of 15 s, renewed 5 s before it ends.
pub async fn lease_manager(
    client: kube::Client,
    namespace: &str,
    lease: &str,
    identity: &str,
) -> Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError> {
    kube_lease_manager::LeaseManagerBuilder::new(client, lease)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        .with_field_manager(lease_field_manager(identity))
        .build()
        .await
}

/// Until when `lease` lets `identity` act: its last renewal plus the lease's duration, less
/// [`MARGIN`]; `None` when another identity holds it (or it says nothing).
pub fn valid_until(lease: &Lease, identity: &str) -> Option<DateTime<Utc>> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?;
    let renewed = DateTime::from_timestamp(renewed.0.as_second(), renewed.0.subsec_nanosecond().max(0) as u32)?;
    let duration = chrono::Duration::seconds(i64::from(spec.lease_duration_seconds?));
    Some(renewed + duration - MARGIN)
}

/// Watches the Lease while this replica leads: the gate is open only while the last
/// renewal it saw is valid. A renewal that is late (the apiserver slow or out of reach)
/// pauses the writes; the next one seen resumes them. Losing the Lease to another holder is
/// the lease manager's to report (the process then stops).
pub async fn watch(api: Api<Lease>, name: String, identity: String, gate: Arc<WriteGate>) {
    let mut until: Option<DateTime<Utc>> = Some(Utc::now() + chrono::Duration::seconds(5));
    loop {
        match api.get_opt(&name).await {
            Ok(Some(lease)) => until = valid_until(&lease, &identity),
            Ok(None) => until = None,
            // Out of reach: the last renewal seen still counts, until it expires.
            Err(e) => tracing::warn!(error = %e, "reading the leader Lease"),
        }
        let valid = until.is_some_and(|u| Utc::now() < u);
        if valid && !gate.is_open() {
            tracing::info!(lease = %name, "the Lease is renewed: writes resume");
            gate.open();
        } else if !valid && gate.is_open() {
            gate.close();
            tracing::warn!(lease = %name, "the Lease was not renewed in time, or is not ours: writes pause");
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// Who holds `lease`, if anyone: an empty holder is none (a released Lease).
fn holder_of(lease: Option<&Lease>) -> Option<&str> {
    lease?
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

/// Resolves when a Lease that another replica held is released (a leader stopping cleanly
/// clears its holder). The lease manager of a standby sleeps until the holder's last renewal
/// expires, up to the Lease's whole duration, even after a release; the standby watches for
/// the release itself so that it can claim the Lease at once. A Lease that was never held, or
/// that this replica holds, does not count.
pub async fn released_by_another(api: Api<Lease>, name: &str, identity: &str) {
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher;
    // With the watcher's own backoff: an identity that may not watch Leases retries slowly,
    // and the lease manager's sleep still bounds the wait.
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let changes = watcher(api, config).default_backoff().touched_objects();
    futures::pin_mut!(changes);
    let mut held_by_another = false;
    while let Some(change) = changes.next().await {
        match change {
            Ok(lease) => match holder_of(Some(&lease)) {
                Some(holder) => held_by_another = holder != identity,
                None if held_by_another => return,
                None => {}
            },
            Err(e) => tracing::debug!(error = %e, "watching the Lease for a release"),
        }
    }
    std::future::pending::<()>().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed: DateTime<Utc>) -> Lease {
        let ts = k8s_openapi::jiff::Timestamp::from_second(renewed.timestamp()).unwrap();
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(ts)),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_lease_counts_until_its_last_renewal_expires_and_only_for_its_holder() {
        let renewed: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().unwrap();
        assert_eq!(
            valid_until(&lease("me", renewed), "me"),
            Some(renewed + chrono::Duration::seconds(13))
        );
        assert_eq!(valid_until(&lease("standby", renewed), "me"), None);
        assert_eq!(valid_until(&Lease::default(), "me"), None);
    }
}
