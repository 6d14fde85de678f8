//! `make bench-cluster`: the release operator on the real kube-apiserver harness, against
//! the emulator, at scale. Prints, in one run:
//!
//! - the raw apiserver rate of server-side-apply status patches, with the operator's client
//!   library (kube-rs) and concurrency, on objects of the same kind;
//! - the operator's cold start, end to end (from the process's start to the last Ready) as a
//!   ratio to the apiserver's own time for the same writes, and its rate from first to last;
//! - list pages and writes per steady resync; the operator's peak RSS;
//! - spec edit to Ready at the new generation, p50 and p99;
//! - the quota-bound case: N ImageShares of which some need a Share (10 a minute per
//!   account), against the same N without them;
//! - 100 DesktopMaintenanceWindows over 10,000 desktops that open together, and again with
//!   2,000 users connected at the start who leave over the following minute;
//! - FotaTaskPolicies and OtaSchedules across many regions and delivery groups;
//! - an UpdateRollout of 3 waves over 20 delivery groups (`rollout`: each wave's progress
//!   over time, in `rollout.csv`, drawn by `scripts/plot-rollout.py`).
//!
//! Environment: BENCH_N (10000), BENCH_CONCURRENCY (the operator's default),
//! BENCH_RESYNC_SECONDS (30), BENCH_QUOTA_N (2000), BENCH_QUOTA_WRITES (100),
//! BENCH_QUOTA_SECONDS (130), BENCH_CASES (`scale,quota,windows,drain,fota,ota,rollout`), BENCH_OUT
//! (`target/bench-cluster`: CSV of Ready over time, for `scripts/plot-bench.py`),
//! BENCH_SAMPLE_MS (250: how often the scale case reads the reconciles in flight from
//! `/metrics`; each scrape renders every resource's series on the same cores).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alicloud_ops_operator::api::{DesktopMaintenanceWindow, FotaTaskPolicy, ImageShare, OtaSchedule};
use alicloud_ops_operator::cloud::ops::appstream::{AppInstanceGroup, OtaInfo};
use alicloud_ops_operator::cloud::ops::ecd::{Desktop, FotaTask};
use alicloud_ops_operator::cloud::ops::swas::CustomImage;
use alicloud_ops_operator::controller::context::DEFAULT_CONCURRENCY;
use alicloud_ops_operator::emulator::state::{DeliveryGroup, EcdRegion, SwasRegion};
use alicloud_ops_operator::emulator::{CloudState, Emulator, EmulatorConfig};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::cluster::*;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const API_VERSION: &str = "ops.alicloud.dev/v1alpha1";

trait Kind:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}
impl<K> Kind for K where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Creates `bodies` with `concurrency` requests in flight; returns the seconds it took.
async fn create_all<K: Kind>(client: &Client, ns: &str, bodies: Vec<Value>, concurrency: usize) -> f64 {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    futures::stream::iter(bodies)
        .map(|b| {
            let api = api.clone();
            async move {
                let obj: K = serde_json::from_value(b).unwrap();
                api.create(&PostParams::default(), &obj).await.unwrap();
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    started.elapsed().as_secs_f64()
}

/// Server-side-apply status patches of every object in `ns`, `concurrency` at a time, with
/// kube-rs as the operator uses it: the apiserver's own rate for this work. `status` gives
/// each object's status, the same shape as the operator's, so both cost the same to apply.
async fn raw_status_rate<K: Kind>(
    client: &Client,
    ns: &str,
    names: &[String],
    concurrency: usize,
    status: impl Fn(&str) -> Value,
) -> f64 {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = api.clone();
            let status = status(&name);
            async move {
                let patch = json!({
                    "apiVersion": K::api_version(&()),
                    "kind": K::kind(&()),
                    "status": status,
                });
                api.patch_status(&name, &PatchParams::apply("bench-raw").force(), &Patch::Apply(&patch))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    names.len() as f64 / started.elapsed().as_secs_f64()
}

/// What a watch of one namespace saw: when each object was first Ready at each generation.
#[derive(Default)]
struct Readiness {
    /// name -> (generation, reason) last seen with Ready at the current generation.
    current: HashMap<String, (i64, String)>,
    /// (seconds since the tracker started, objects Ready with `want`) after each change.
    timeline: Vec<(f64, usize)>,
    ready: usize,
}

struct Tracker {
    state: Arc<Mutex<Readiness>>,
    changed: Arc<tokio::sync::Notify>,
    started: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl Tracker {
    /// Watches `ns`; an object counts once its Ready condition, at its generation, has a
    /// reason in `want`. Returns once the watch's initial list is read, so that listing
    /// what exists already loads neither the apiserver nor the cores during a measurement.
    async fn start<K: Kind>(client: &Client, ns: &str, want: &'static [&'static str]) -> Tracker {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let state = Arc::new(Mutex::new(Readiness::default()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let started = Instant::now();
        let (s, c) = (state.clone(), changed.clone());
        let (listed_tx, listed) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            futures::pin_mut!(stream);
            let mut listed_tx = Some(listed_tx);
            while let Ok(Some(event)) = stream.try_next().await {
                let objs = match event {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![o],
                    watcher::Event::InitDone => {
                        if let Some(tx) = listed_tx.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    _ => continue,
                };
                let mut st = s.lock().unwrap();
                for o in objs {
                    let v = serde_json::to_value(&o).unwrap();
                    let generation = v["metadata"]["generation"].as_i64().unwrap_or(0);
                    let ready = v["status"]["conditions"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                        .filter(|c| c["observedGeneration"].as_i64() == Some(generation))
                        .and_then(|c| c["reason"].as_str())
                        .map(str::to_string);
                    let name = o.name_any();
                    let was = st.current.get(&name).is_some_and(|(_, r)| want.contains(&r.as_str()));
                    match ready {
                        Some(reason) => {
                            st.current.insert(name, (generation, reason));
                        }
                        None => {
                            st.current.remove(&name);
                        }
                    }
                    let now = st
                        .current
                        .get(&o.name_any())
                        .is_some_and(|(_, r)| want.contains(&r.as_str()));
                    match (was, now) {
                        (false, true) => st.ready += 1,
                        (true, false) => st.ready -= 1,
                        _ => {}
                    }
                    let point = (started.elapsed().as_secs_f64(), st.ready);
                    st.timeline.push(point);
                }
                c.notify_waiters();
            }
        });
        if tokio::time::timeout(Duration::from_secs(120), listed).await.is_err() {
            panic!("timed out waiting for the tracker's initial list of {ns}");
        }
        Tracker {
            state,
            changed,
            started,
            task,
        }
    }

    fn ready(&self) -> usize {
        self.state.lock().unwrap().ready
    }

    /// Waits until `check` holds; the seconds since the tracker started.
    async fn until(&self, what: &str, timeout: Duration, check: impl Fn(&Readiness) -> bool) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if check(&self.state.lock().unwrap()) {
                return self.started.elapsed().as_secs_f64();
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}: {} ready", self.ready());
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// When the first object became ready (seconds since the tracker started).
    fn first_ready(&self) -> f64 {
        let st = self.state.lock().unwrap();
        st.timeline.iter().find(|(_, n)| *n > 0).map(|(t, _)| *t).unwrap_or(0.0)
    }

    fn write_csv(&self, path: &std::path::Path, label: &str) {
        let st = self.state.lock().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for (t, n) in &st.timeline {
            writeln!(f, "{label},{t:.3},{n}").unwrap();
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The apiserver's own request counts (`apiserver_request_total`) by resource, verb and
/// subresource: what a phase asked of the apiserver is the difference of two readings.
async fn apiserver_requests(client: &Client) -> HashMap<String, f64> {
    let request = axum::http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.unwrap_or_default();
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
        };
        let key = format!(
            "{} {}{}",
            label("verb"),
            label("resource"),
            match label("subresource") {
                "" => String::new(),
                sub => format!("/{sub}"),
            }
        );
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *out.entry(key).or_default() += value;
    }
    out
}

/// The requests made between two readings, largest first, of the resources named.
fn requests_between(before: &HashMap<String, f64>, after: &HashMap<String, f64>, resources: &[&str]) -> String {
    let mut diff: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(k, v)| *v > 0.0 && resources.iter().any(|r| k.contains(r)))
        .collect();
    diff.sort_by(|a, b| b.1.total_cmp(&a.1));
    diff.iter()
        .map(|(k, v)| format!("{k} {v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// A `/proc/<pid>/status` figure given in kB, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU seconds (user and system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The harness's process (etcd and kube-apiserver), found by its executable.
fn harness_pid() -> Option<u32> {
    let harness = std::fs::canonicalize(std::env::var("KUBE_HARNESS_BIN").ok()?).ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        (std::fs::read_link(e.path().join("exe")).ok()? == harness).then_some(pid)
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Settings {
    concurrency: usize,
    resync: u64,
    out: std::path::PathBuf,
    sample: Duration,
}

impl Settings {
    fn operator(&self, ns: &str, emu: &Emulator) -> Operator {
        let concurrency = self.concurrency.to_string();
        let resync = format!("{}s", self.resync);
        // No cap on snapshot age: lists live for the resync interval, as in production.
        let args = [
            "--resync-interval",
            resync.as_str(),
            "--concurrency",
            concurrency.as_str(),
            "--snapshot-max-age",
            "24h",
        ];
        Operator::start_full(
            ns,
            &emu.url(),
            &format!("lease-{ns}"),
            &args,
            &[("RUST_LOG", "warn,alicloud_ops_operator=info")],
        )
    }
}

fn image_share(name: &str, region: &str, image: &str) -> Value {
    json!({"apiVersion": API_VERSION, "kind": "ImageShare", "metadata": {"name": name},
           "spec": {"regionId": region, "imageId": image, "shared": true}})
}

/// Image ids allow letters and digits only after `m-`.
fn image_id(region: &str, i: usize) -> String {
    format!("m-{}{i:05}", region.replace('-', ""))
}

fn images(region: &str, n: usize, unshared: usize) -> SwasRegion {
    SwasRegion {
        custom_images: (0..n)
            .map(|i| CustomImage {
                image_id: image_id(region, i),
                name: format!("image-{i}"),
                status: "1".into(),
                in_share: i >= unshared,
                region_id: region.into(),
                ..Default::default()
            })
            .collect(),
    }
}

/// N ImageShares in sync with N images: raw rate, cold start, resync, RSS, edits.
async fn scale(client: &Client, emu: &Emulator, n: usize, s: &Settings) {
    let region = "ap-southeast-1";
    emu.world()
        .update_state(|st| st.swas.insert(region.into(), images(region, n, 0)));
    let raw_ns = namespace(client, "raw").await;
    let ns = namespace(client, "scale").await;
    let names: Vec<String> = (0..n).map(|i| format!("share-{i:05}")).collect();
    let bodies = |names: &[String]| -> Vec<Value> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| image_share(name, region, &image_id(region, i)))
            .collect()
    };
    let created = create_all::<ImageShare>(client, &raw_ns, bodies(&names), 32).await;
    create_all::<ImageShare>(client, &ns, bodies(&names), 32).await;
    let harness = harness_pid();
    let harness_cpu = || harness.map(cpu_seconds).unwrap_or(0.0);
    let concurrency = s.concurrency;
    // The bench watches the raw namespace as it watches the operator's: the same load on the
    // apiserver and on the two cores, apart from the operator itself.
    let raw_watch = Tracker::start::<ImageShare>(client, &raw_ns, &["Raw"]).await;
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": "True", "reason": reason, "message": message,
               "lastTransitionTime": "2026-11-23T00:00:00Z", "observedGeneration": 1})
    };
    let raw_cpu = harness_cpu();
    let raw = raw_status_rate::<ImageShare>(client, &raw_ns, &names, concurrency, |name| {
        json!({"observedGeneration": 1, "inShare": true, "imageName": name, "imageStatus": "1", "shareOperations": 0,
               "conditions": [condition("Ready", "Raw", &format!("image {name} is shared to ECS")),
                              condition("Synced", "ReconcileSuccess", "")]})
    })
    .await;
    raw_watch
        .until("the raw patches seen", Duration::from_secs(60), |st| st.ready == n)
        .await;
    let raw_cpu = harness_cpu() - raw_cpu;
    drop(raw_watch);
    println!("ImageShare x {n}, {n} images in the region");
    println!("  create: {:.0}/s (32 in flight)", n as f64 / created);
    println!(
        "  raw apiserver status-patch rate (kube-rs, SSA, {concurrency} in flight, the bench watching): {raw:.0}/s"
    );

    let tracker = Tracker::start::<ImageShare>(client, &ns, &["InSync"]).await;
    emu.world().reset_counters();
    let requests_before = apiserver_requests(client).await;
    let started = Instant::now();
    let cold_cpu = harness_cpu();
    let op = s.operator(&ns, emu);
    let pid = op.pid().unwrap();
    // What the operator's workers do meanwhile: reconciles in flight, sampled from /metrics.
    let in_flight: Arc<Mutex<Vec<f64>>> = Arc::default();
    let sampler = {
        let (url, in_flight, every) = (op.metrics.clone(), in_flight.clone(), s.sample);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Ok(r) = https_client().get(&url).bearer_auth(admin_token()).send().await {
                    let text = r.text().await.unwrap_or_default();
                    let sample = metric_sum(&text, "alicloud_ops_reconciles_in_flight", "ImageShare");
                    in_flight.lock().unwrap().push(sample);
                }
            }
        })
    };
    let offset = tracker.started.elapsed().as_secs_f64() - started.elapsed().as_secs_f64();
    let all = tracker
        .until("all Ready", Duration::from_secs(600), |st| st.ready == n)
        .await
        - offset;
    let (cold_cpu, operator_cpu) = (harness_cpu() - cold_cpu, cpu_seconds(pid));
    sampler.abort();
    let first = tracker.first_ready() - offset;
    let pages = emu.world().counters().count("ListCustomImages");
    let rate = n as f64 / (all - first);
    // The headline: from the process's start to the last Ready, against the time the
    // apiserver itself needs for the same status writes.
    let raw_time = n as f64 / raw;
    println!(
        "  end to end: all Ready {all:.1} s after the process started = {:.2} x the apiserver's own time for the same writes ({raw_time:.1} s); the first Ready at {first:.1} s",
        all / raw_time
    );
    println!(
        "  convergence: {rate:.0}/s from first to last Ready = {:.0} % of the raw rate",
        100.0 * rate / raw
    );
    println!(
        "  CPU a status write: the apiserver and etcd {:.2} ms (raw: {:.2} ms), the operator {:.2} ms ({operator_cpu:.1} s in all)",
        1000.0 * cold_cpu / n as f64,
        1000.0 * raw_cpu / n as f64,
        1000.0 * operator_cpu / n as f64
    );
    let samples = in_flight.lock().unwrap().clone();
    let metrics = op.scrape().await;
    let reconcile_seconds = metric_sum(&metrics, "alicloud_ops_reconcile_duration_seconds_sum", "ImageShare");
    let reconciles = metric_sum(&metrics, "alicloud_ops_reconcile_duration_seconds_count", "ImageShare");
    println!(
        "  reconciles in flight during the cold start: {:.1} on average of {concurrency} ({} samples); a reconcile took {:.0} ms on average ({reconciles} reconciles)",
        samples.iter().sum::<f64>() / samples.len().max(1) as f64,
        samples.len(),
        1000.0 * reconcile_seconds / reconciles.max(1.0)
    );
    println!("  lists at cold start: {pages} ListCustomImages pages");
    println!(
        "  apiserver requests during the cold start: {}",
        requests_between(
            &requests_before,
            &apiserver_requests(client).await,
            &["imageshares", "events", "leases"]
        )
    );
    tracker.write_csv(&s.out.join("ready.csv"), "ImageShare cold start");

    // One steady resync interval: what it costs.
    emu.world().reset_counters();
    let writes_before = tracker.state.lock().unwrap().timeline.len();
    tokio::time::sleep(Duration::from_secs_f64(s.resync as f64 * 1.15 + 2.0)).await;
    let c = emu.world().counters();
    let status_changes = tracker.state.lock().unwrap().timeline.len() - writes_before;
    println!(
        "  one resync ({} s): {} ListCustomImages pages (ceil(N/100) = {}), {} cloud writes, {} status changes",
        s.resync,
        c.count("ListCustomImages"),
        n.div_ceil(100),
        c.count("ModifyImageShareStatus"),
        status_changes
    );

    // Spec edits, one at a time: edit to Ready at the new generation.
    let api: Api<ImageShare> = Api::namespaced(client.clone(), &ns);
    let mut latencies = Vec::new();
    for name in names.iter().step_by((n / 200).max(1)).take(200) {
        let edited = Instant::now();
        let obj = api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"resyncInterval": "31m"}})),
            )
            .await
            .unwrap();
        let generation = obj.metadata.generation.unwrap();
        tracker
            .until("the edit Ready", Duration::from_secs(60), |st| {
                st.current
                    .get(name)
                    .is_some_and(|(g, r)| *g == generation && r == "InSync")
            })
            .await;
        latencies.push(edited.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "  edit to Ready ({} edits, one at a time): p50 {:.0} ms, p99 {:.0} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!(
        "  operator peak RSS: {:.1} MiB (now: {:.1} MiB heap and stacks, {:.1} MiB mapped from the binary and libraries)",
        peak_rss_mib(pid),
        status_mib(pid, "RssAnon:"),
        status_mib(pid, "RssFile:")
    );
    drop(op);
}

/// The same N ImageShares twice: all in sync, and with some needing a Share under the
/// quota of 10 a minute. The in-sync ones should not notice the others.
async fn quota(client: &Client, emu: &Emulator, n: usize, writes: usize, seconds: u64, s: &Settings) {
    println!("ImageShare x {n}, {writes} of which need a Share (10 calls a minute per account)");
    let mut in_sync_times = Vec::new();
    for (label, unshared) in [("alone", 0usize), ("with quota-bound writes", writes)] {
        let region = if unshared == 0 { "ap-south-1" } else { "ap-northeast-2" };
        emu.world()
            .update_state(|st| st.swas.insert(region.into(), images(region, n, unshared)));
        let ns = namespace(client, "quota").await;
        // The in-sync ones: every image but the first `unshared`.
        let bodies: Vec<Value> = (unshared..n)
            .chain(0..unshared)
            .map(|i| image_share(&format!("share-{i:05}"), region, &image_id(region, i)))
            .collect();
        create_all::<ImageShare>(client, &ns, bodies, 32).await;
        let tracker = Tracker::start::<ImageShare>(client, &ns, &["InSync"]).await;
        emu.world().reset_counters();
        let started = Instant::now();
        let op = s.operator(&ns, emu);
        let offset = tracker.started.elapsed().as_secs_f64() - started.elapsed().as_secs_f64();
        let in_sync = n - unshared;
        let t = tracker
            .until("the in-sync ones Ready", Duration::from_secs(600), |st| {
                (unshared..n).all(|i| {
                    st.current
                        .get(&format!("share-{i:05}"))
                        .is_some_and(|(_, r)| r == "InSync")
                })
            })
            .await
            - offset;
        in_sync_times.push(t);
        println!("  {label}: the {in_sync} in sync all Ready {t:.1} s after the process started");
        if unshared > 0 {
            let mut per_minute = Vec::new();
            let mut last = 0;
            let deadline = started + Duration::from_secs(seconds);
            let mut next = started + Duration::from_secs(60);
            while Instant::now() < deadline {
                tokio::time::sleep_until(next.min(deadline).into()).await;
                let c = emu.world().counters();
                let shares = c.count("ModifyImageShareStatus") as usize;
                per_minute.push(shares - last);
                last = shares;
                next += Duration::from_secs(60);
            }
            let throttled: u64 = emu
                .world()
                .counters()
                .actions
                .values()
                .flat_map(|codes| codes.iter())
                .filter(|(code, _)| code.starts_with("Throttling"))
                .map(|(_, n)| *n)
                .sum();
            println!(
                "  Shares sent per minute since the start: {per_minute:?}; Throttling answers from the cloud: {throttled}"
            );
        }
        drop(op);
        drop(tracker);
    }
    println!(
        "  the in-sync ones with quota-bound writes present took {:.0} % of the time they take alone",
        100.0 * in_sync_times[1] / in_sync_times[0]
    );
}

/// 100 windows over 10,000 desktops (100 per office site) that open together.
/// A region of `sites` office sites with `per_site` running desktops each, nobody connected.
fn desk_region(region: &str, sites: usize, per_site: usize) -> EcdRegion {
    EcdRegion {
        desktops: (0..sites * per_site)
            .map(|i| Desktop {
                desktop_id: format!("ecd-jp{i:05}"),
                desktop_name: format!("desk-{i}"),
                desktop_status: "Running".into(),
                office_site_id: format!("{region}+dir-{:04}", i / per_site),
                management_flags: vec!["NoFlag".into()],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// One window per office site, all open from `opens` to `closes`.
fn site_windows(
    region: &str,
    sites: usize,
    opens: chrono::DateTime<chrono::Utc>,
    closes: chrono::DateTime<chrono::Utc>,
) -> Vec<Value> {
    (0..sites)
        .map(|site| {
            json!({"apiVersion": API_VERSION, "kind": "DesktopMaintenanceWindow", "metadata": {"name": format!("site-{site:03}")},
                   "spec": {"regionId": region, "selector": {"officeSiteId": format!("{region}+dir-{site:04}")},
                            "window": {"start": opens.to_rfc3339(), "end": closes.to_rfc3339()}}})
        })
        .collect()
}

/// One window per office site of `region`, opening at `opens` for 30 minutes, the operator
/// started, and the tracker of Active windows; returns when the windows open.
async fn open_site_windows(
    client: &Client,
    emu: &Emulator,
    s: &Settings,
    prefix: &str,
    region: &str,
    sites: usize,
    opens: chrono::DateTime<chrono::Utc>,
) -> (Tracker, Operator, Instant) {
    let ns = namespace(client, prefix).await;
    let closes = opens + chrono::Duration::minutes(30);
    create_all::<DesktopMaintenanceWindow>(client, &ns, site_windows(region, sites, opens, closes), 32).await;
    let tracker = Tracker::start::<DesktopMaintenanceWindow>(client, &ns, &["Active"]).await;
    emu.world().reset_counters();
    let op = s.operator(&ns, emu);
    let wait = (opens - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    (tracker, op, Instant::now())
}

/// 100 DesktopMaintenanceWindows over 10,000 desktops, opening at once.
async fn windows(client: &Client, emu: &Emulator, s: &Settings) {
    let region = "ap-northeast-1";
    let (sites, per_site) = (100usize, 100usize);
    emu.world()
        .update_state(|st| st.ecd.insert(region.into(), desk_region(region, sites, per_site)));
    let opens = chrono::Utc::now() + chrono::Duration::seconds(40);
    let (tracker, op, opened) = open_site_windows(client, emu, s, "windows", region, sites, opens).await;
    tracker
        .until("every window Active", Duration::from_secs(600), |st| st.ready == sites)
        .await;
    let all_active = opened.elapsed().as_secs_f64();
    let in_maintenance = emu.world().state().ecd[region]
        .desktops
        .iter()
        .filter(|d| d.in_maintenance())
        .count();
    let c = emu.world().counters();
    println!(
        "DesktopMaintenanceWindow x {sites}, {} desktops in the region, all opening at once",
        sites * per_site
    );
    println!(
        "  all {sites} Active {all_active:.1} s after the start; {in_maintenance} desktops in maintenance; {} DescribeDesktops pages, {} SetDesktopMaintenance calls",
        c.count("DescribeDesktops"),
        c.count("SetDesktopMaintenance")
    );
    tracker.write_csv(&s.out.join("ready.csv"), "DesktopMaintenanceWindow opening");
    drop(op);
}

/// The same 100 windows over 10,000 desktops, with people: 2,000 desktops have a user
/// connected at the start, who leave one by one over the following minute (policy Wait).
/// Reports when every free desktop was in maintenance, when every desktop was, the calls
/// by action, and the ratio to the floor the client's pacing (`--cloud-qps`, 10 a second
/// for ecd in a region) sets for the calls made.
async fn drain(client: &Client, emu: &Emulator, s: &Settings) {
    use alicloud_ops_operator::emulator::state::{SessionAction, SessionEvent};
    let region = "ap-northeast-3";
    let (sites, per_site, busy) = (100usize, 100usize, 2000usize);
    let opens = chrono::Utc::now() + chrono::Duration::seconds(40);
    // Every fifth desktop has someone on it, who leaves at an even pace over 60 s.
    let busy_ids: Vec<String> = (0..busy).map(|i| format!("ecd-jp{:05}", i * 5)).collect();
    emu.world().update_state(|st| {
        let mut r = desk_region(region, sites, per_site);
        for (i, id) in busy_ids.iter().enumerate() {
            let user = format!("user-{i}");
            r.session_events.push(SessionEvent {
                at: opens - chrono::Duration::minutes(30),
                desktop_id: id.clone(),
                end_user_id: user.clone(),
                action: SessionAction::Connect,
            });
            r.session_events.push(SessionEvent {
                at: opens + chrono::Duration::milliseconds((60_000 * i / busy) as i64),
                desktop_id: id.clone(),
                end_user_id: user,
                action: SessionAction::Disconnect,
            });
        }
        st.ecd.insert(region.into(), r);
    });
    let (tracker, op, opened) = open_site_windows(client, emu, s, "drain", region, sites, opens).await;
    let busy_set: std::collections::HashSet<&str> = busy_ids.iter().map(String::as_str).collect();
    let (mut free_done, mut all_done) = (None, None);
    while all_done.is_none() && opened.elapsed() < Duration::from_secs(600) {
        let state = emu.world().state();
        let desktops = &state.ecd[region].desktops;
        let maintained = |d: &&Desktop| d.maintained();
        let free = desktops
            .iter()
            .filter(|d| !busy_set.contains(d.desktop_id.as_str()))
            .filter(maintained)
            .count();
        if free_done.is_none() && free == sites * per_site - busy {
            free_done = Some(opened.elapsed().as_secs_f64());
        }
        if desktops.iter().filter(maintained).count() == sites * per_site {
            all_done = Some(opened.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (free_done, all_done) = (
        free_done.expect("every free desktop in maintenance within 10 minutes"),
        all_done.expect("every desktop in maintenance within 10 minutes"),
    );
    tracker
        .until("every window Active (none Draining)", Duration::from_secs(600), |st| {
            st.ready == sites
        })
        .await;
    let all_active = opened.elapsed().as_secs_f64();
    let c = emu.world().counters();
    let calls = [
        "DescribeDesktops",
        "SetDesktopMaintenance",
        "TagResources",
        "DescribeDesktopSessions",
        "DisconnectDesktopSessions",
    ];
    let made: Vec<String> = calls.iter().map(|a| format!("{a} {}", c.count(a))).collect();
    // The floor for entering every free desktop, at the operator's default pacing (10 calls
    // a second per credential set, product and region): one list of the region, and the
    // tag and maintenance batches sent.
    let entering_calls =
        (sites * per_site).div_ceil(100) as u64 + c.count("TagResources") + c.count("SetDesktopMaintenance");
    let floor = entering_calls as f64 / 10.0;
    println!(
        "DesktopMaintenanceWindow x {sites} with people: {} desktops, {busy} with a user at the start who leave over 60 s (policy Wait)",
        sites * per_site
    );
    println!(
        "  every free desktop in maintenance {free_done:.1} s after the start = {:.2} x the pacing floor of {floor:.1} s ({entering_calls} calls: one list, the tags, the batches); every desktop {all_done:.1} s (the last user left at 60 s); all {sites} Active (none Draining) {all_active:.1} s",
        free_done / floor
    );
    println!("  calls: {}", made.join(", "));
    drop(op);
}

/// One FotaTaskPolicy per region, each pushing its region's pending tasks.
async fn fota(client: &Client, emu: &Emulator, s: &Settings) {
    let (regions, tasks) = (50usize, 20usize);
    emu.world().update_state(|st| {
        for r in 0..regions {
            st.ecd.insert(
                format!("xx-bench{r:02}"),
                EcdRegion {
                    fota_tasks: (0..tasks)
                        .map(|t| FotaTask {
                            task_uid: format!("aot-b{r:02}{t:03}"),
                            app_version: "2.0".into(),
                            status: "Pending".into(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
            );
        }
    });
    let ns = namespace(client, "fota").await;
    let bodies: Vec<Value> = (0..regions)
        .map(|r| {
            json!({"apiVersion": API_VERSION, "kind": "FotaTaskPolicy", "metadata": {"name": format!("region-{r:02}")},
                   "spec": {"regionId": format!("xx-bench{r:02}"), "autoPush": true}})
        })
        .collect();
    let seconds = cold_start::<FotaTaskPolicy>(client, emu, s, &ns, bodies, &["InSync"]).await;
    let c = emu.world().counters();
    println!(
        "FotaTaskPolicy x {regions} regions, {tasks} pending tasks each: all InSync {seconds:.1} s after the process started; {} UpdateFotaTask calls, {} DescribeFotaTasks pages",
        c.count("UpdateFotaTask"),
        c.count("DescribeFotaTasks")
    );
}

/// Creates `bodies` in `ns`, starts the operator, and waits until every one is Ready with
/// a reason in `want`; the seconds since the process started. The emulator's counters
/// start from zero with the operator.
async fn cold_start<K: Kind>(
    client: &Client,
    emu: &Emulator,
    s: &Settings,
    ns: &str,
    bodies: Vec<Value>,
    want: &'static [&'static str],
) -> f64 {
    let count = bodies.len();
    create_all::<K>(client, ns, bodies, 32).await;
    let tracker = Tracker::start::<K>(client, ns, want).await;
    emu.world().reset_counters();
    let started = Instant::now();
    let _op = s.operator(ns, emu);
    tracker
        .until(
            &format!("every {} Ready", K::kind(&())),
            Duration::from_secs(600),
            |st| st.ready == count,
        )
        .await;
    started.elapsed().as_secs_f64()
}

/// One OtaSchedule per delivery group, each approving its group's new version.
async fn ota(client: &Client, emu: &Emulator, s: &Settings) {
    let groups = 200usize;
    let region = "ap-southeast-5";
    emu.world().update_state(|st| {
        for g in 0..groups {
            st.appstream.app_instance_groups.push(DeliveryGroup {
                biz_region_id: region.into(),
                group: AppInstanceGroup {
                    app_instance_group_id: format!("aig-b{g:04}"),
                    app_instance_group_name: format!("bench-{g}"),
                    region_id: region.into(),
                    status: "PUBLISHED".into(),
                    resource_status: "AVAILABLE".into(),
                    ota_info: OtaInfo {
                        ota_version: "1.0".into(),
                        new_ota_version: "1.1".into(),
                        task_id: format!("ota-b{g:04}-1"),
                    },
                    ..Default::default()
                },
                ..Default::default()
            });
        }
    });
    let ns = namespace(client, "ota").await;
    let bodies: Vec<Value> = (0..groups)
        .map(|g| {
            json!({"apiVersion": API_VERSION, "kind": "OtaSchedule", "metadata": {"name": format!("group-{g:04}")},
                   "spec": {"bizRegionId": region, "appInstanceGroupId": format!("aig-b{g:04}"),
                            "window": {"cron": "0 3 * * 0", "timeZone": "Asia/Shanghai"}}})
        })
        .collect();
    let seconds = cold_start::<OtaSchedule>(client, emu, s, &ns, bodies, &["Approved", "Scheduled", "InSync"]).await;
    let c = emu.world().counters();
    println!(
        "OtaSchedule x {groups} delivery groups with a new version: all approved {seconds:.1} s after the process started; {} ApproveOtaTask calls, {} ListAppInstanceGroup pages",
        c.count("ApproveOtaTask"),
        c.count("ListAppInstanceGroup")
    );
}

/// An UpdateRollout of 3 waves over 20 delivery groups (2 canaries one at a time, 6 early
/// three at a time, 12 broad half at a time), each upgrade taking 20 s and one broad upgrade
/// failing (within maxFailures 1), 20 s of soak after each wave. Each wave's counts are
/// sampled every second from the rollout's status into `rollout.csv`.
async fn rollout(client: &Client, emu: &Emulator, s: &Settings) {
    use alicloud_ops_operator::api::rollout::UpdateRollout;
    use alicloud_ops_operator::cloud::ops::appstream::GroupTag;
    let region = "ap-southeast-1";
    let rings: Vec<&str> = std::iter::repeat_n("canary", 2)
        .chain(std::iter::repeat_n("early", 6))
        .chain(std::iter::repeat_n("broad", 12))
        .collect();
    emu.world().update_state(|st| {
        for (g, ring) in rings.iter().enumerate() {
            st.appstream.app_instance_groups.push(DeliveryGroup {
                biz_region_id: region.into(),
                group: AppInstanceGroup {
                    app_instance_group_id: format!("aig-r{g:04}"),
                    app_instance_group_name: format!("rollout-{g}"),
                    region_id: region.into(),
                    status: "PUBLISHED".into(),
                    resource_status: "AVAILABLE".into(),
                    ota_info: OtaInfo {
                        ota_version: "1.0".into(),
                        new_ota_version: "1.1".into(),
                        task_id: format!("ota-r{g:04}-1"),
                    },
                    tags: vec![GroupTag {
                        key: "ring".into(),
                        value: ring.to_string(),
                        scope: "Custom".into(),
                    }],
                },
                upgrade_duration_seconds: 20,
                upgrade_outcomes: if g == 14 { vec!["FAILED".into()] } else { vec![] },
                ..Default::default()
            });
        }
    });
    let ns = namespace(client, "rollout").await;
    let body = json!({"apiVersion": API_VERSION, "kind": "UpdateRollout", "metadata": {"name": "rings"},
        "spec": {"ota": {"bizRegionId": region}, "startDelay": "0s",
                 "waves": [{"name": "canary", "selector": {"tags": {"ring": "canary"}}, "maxUnavailable": 1, "soak": "20s"},
                           {"name": "early", "selector": {"tags": {"ring": "early"}}, "maxUnavailable": 3, "soak": "20s"},
                           {"name": "broad", "selector": {"tags": {"ring": "broad"}}, "maxUnavailable": "50%"}],
                 "failurePolicy": {"maxFailures": 1}}});
    create_all::<UpdateRollout>(client, &ns, vec![body], 1).await;
    let api = Api::<UpdateRollout>::namespaced(client.clone(), &ns);
    emu.world().reset_counters();
    let started = Instant::now();
    let _op = s.operator(&ns, emu);
    let mut csv = std::fs::File::create(s.out.join("rollout.csv")).unwrap();
    writeln!(csv, "seconds,wave,updating,succeeded,failed").unwrap();
    let mut phases: Vec<(f64, String)> = Vec::new();
    loop {
        let t = started.elapsed().as_secs_f64();
        let status = api.get("rings").await.ok().and_then(|r| r.status).unwrap_or_default();
        for w in &status.waves {
            writeln!(csv, "{t:.1},{},{},{},{}", w.name, w.updating, w.succeeded, w.failed).unwrap();
        }
        let phase = format!("{:?}/{}", status.phase, status.current_wave.clone().unwrap_or_default());
        if phases.last().is_none_or(|(_, p)| *p != phase) {
            phases.push((t, phase));
        }
        if status.phase == Some(alicloud_ops_operator::api::rollout::RolloutPhase::Completed) {
            break;
        }
        assert!(t < 900.0, "the rollout did not complete in 15 minutes: {status:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let c = emu.world().counters();
    println!(
        "UpdateRollout, 3 waves over 20 delivery groups (20 s upgrades, 20 s soak, one failure): Completed {:.0} s after the process started; {} ApproveOtaTask calls, {} ListOtaTask, {} ListAppInstanceGroup pages",
        started.elapsed().as_secs_f64(),
        c.count("ApproveOtaTask"),
        c.count("ListOtaTask"),
        c.count("ListAppInstanceGroup")
    );
    let line: Vec<String> = phases.iter().map(|(t, p)| format!("{t:.0}s {p}")).collect();
    println!("  phases: {}", line.join(", "));
    println!("  progress over time: {}", s.out.join("rollout.csv").display());
}

fn main() {
    let n: usize = env("BENCH_N", 10_000);
    let cases: String = env("BENCH_CASES", "scale,quota,windows,drain,fota,ota,rollout".to_string());
    let settings = Settings {
        concurrency: env("BENCH_CONCURRENCY", DEFAULT_CONCURRENCY.into()),
        resync: env("BENCH_RESYNC_SECONDS", 30),
        out: std::path::PathBuf::from(env("BENCH_OUT", repo("target/bench-cluster").display().to_string())),
        sample: Duration::from_millis(env("BENCH_SAMPLE_MS", 250)),
    };
    std::fs::create_dir_all(&settings.out).unwrap();
    let _ = std::fs::remove_file(settings.out.join("ready.csv"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = admin().await;
        let mut state = CloudState::default_dataset();
        state.swas.clear();
        let emu = Emulator::start(EmulatorConfig {
            state,
            ..Default::default()
        })
        .await
        .unwrap();
        println!(
            "bench-cluster: release operator (concurrency {}), real kube-apiserver harness, emulator in the bench process; {} cores",
            settings.concurrency,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );
        for case in cases.split(',') {
            match case.trim() {
                "scale" => scale(&client, &emu, n, &settings).await,
                "quota" => {
                    quota(
                        &client,
                        &emu,
                        env("BENCH_QUOTA_N", 2000),
                        env("BENCH_QUOTA_WRITES", 100),
                        env("BENCH_QUOTA_SECONDS", 130),
                        &settings,
                    )
                    .await
                }
                "windows" => windows(&client, &emu, &settings).await,
                "drain" => drain(&client, &emu, &settings).await,
                "fota" => fota(&client, &emu, &settings).await,
                "ota" => ota(&client, &emu, &settings).await,
                "rollout" => rollout(&client, &emu, &settings).await,
                "" => {}
                other => panic!("BENCH_CASES: unknown case {other:?}"),
            }
        }
        println!("Ready over time: {}", settings.out.join("ready.csv").display());
    });
}
