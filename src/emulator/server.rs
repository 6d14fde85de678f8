//! HTTP: the RPC endpoint on `/` and the admin API under `/_emulator/`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::{Caller, KeyStore, NonceCache, SignedRequest, verify};
use super::clock::Clock;
use super::error::{ApiFailure, ApiResult};
use super::faults::{Fault, Faults};
use super::params::Params;
use super::state::CloudState;
use super::swas::ShareBook;
use super::{appstream, ecd, fota, new_request_id, ram, sts, swas};
use crate::cloud::canonical::parse_pairs;
use crate::cloud::endpoint::Product;

/// Counts per action and result code, as `GET /_emulator/requests` shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestCounters {
    pub total: u64,
    /// action → result code (`success` or the error code) → count.
    pub actions: BTreeMap<String, BTreeMap<String, u64>>,
}

impl RequestCounters {
    pub fn count(&self, action: &str) -> u64 {
        self.actions.get(action).map(|c| c.values().sum()).unwrap_or(0)
    }

    pub fn count_code(&self, action: &str, code: &str) -> u64 {
        self.actions.get(action).and_then(|c| c.get(code)).copied().unwrap_or(0)
    }
}

/// What happened to one request, for tests and people checking what a write did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// 1 for the first request the emulator answered (counting from the last reset).
    pub seq: u64,
    pub action: String,
    /// When it was answered, by the emulator's clock.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The action's own parameters (signing and protocol parameters left out).
    pub params: BTreeMap<String, String>,
    /// The AccessKeyId that signed the request (empty when unsigned or refused before).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_key_id: String,
    /// `success` or the error code answered.
    pub code: String,
    /// The action was applied but its answer was lost (an `afterApply` fault).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_lost: bool,
    /// What a write did, line by line (`ecd-1: NoFlag -> EnterMaintenance (alice connected)`,
    /// `ecd-1/alice: disconnected`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<String>,
}

/// The newest requests kept in the log; older ones are dropped (the counters keep counting).
pub const REQUEST_LOG_CAPACITY: usize = 20_000;

const PROTOCOL_PARAMS: &[&str] = &[
    "Action",
    "Version",
    "Format",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "SignatureType",
    "Timestamp",
    "SecurityToken",
];

/// Everything the emulator holds. Separate locks keep signature checks off the state lock.
pub struct World {
    pub clock: Clock,
    state: Mutex<CloudState>,
    keys: Mutex<KeyStore>,
    /// principal (AccessKeyId, or `role/<RoleName>`) → its RAM policy.
    policies: Mutex<std::collections::HashMap<String, ram::Policy>>,
    nonces: Mutex<NonceCache>,
    faults: Mutex<Faults>,
    shares: Mutex<ShareBook>,
    counters: Mutex<RequestCounters>,
    log: Mutex<std::collections::VecDeque<RequestRecord>>,
}

impl World {
    pub fn new(state: CloudState, access_keys: &[(String, String)], accounts: &[(String, String)]) -> Self {
        World {
            clock: Clock::default(),
            state: Mutex::new(state),
            keys: Mutex::new(KeyStore::new(access_keys).with_accounts(accounts)),
            policies: Mutex::default(),
            nonces: Mutex::new(NonceCache::default()),
            faults: Mutex::new(Faults::default()),
            shares: Mutex::new(ShareBook::default()),
            counters: Mutex::new(RequestCounters::default()),
            log: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Attaches `policy` to `principal` (an AccessKeyId, or `role/<RoleName>`), or with `None`
    /// detaches it: the key may then call everything, as the account's own key may.
    pub fn attach_policy(&self, principal: &str, policy: Option<ram::Policy>) {
        let mut policies = self.policies.lock().expect("policies lock");
        match policy {
            Some(p) => policies.insert(principal.to_string(), p),
            None => policies.remove(principal),
        };
    }

    /// RAM's check of one call: the policy of the key, or of the role it was issued for.
    fn authorize(&self, product: Product, action: &str, caller: &Caller, params: &Params) -> ApiResult<()> {
        let Caller::Key { access_key_id } = caller else {
            return Ok(());
        };
        let Some(ram_action) = ram::ram_action(product, action) else {
            return Ok(());
        };
        let Some(identity) = self.keys.lock().expect("keys lock").identity(access_key_id) else {
            return Ok(());
        };
        let role = identity
            .arn
            .split(":assumed-role/")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .map(|r| format!("role/{r}"));
        let policies = self.policies.lock().expect("policies lock");
        let Some(policy) = role
            .as_ref()
            .and_then(|r| policies.get(r))
            .or_else(|| policies.get(access_key_id))
        else {
            return Ok(());
        };
        let resource = ram::resource(product, action, &identity.account_id, params);
        match policy.decide(&ram_action, &resource) {
            ram::Decision::Allow => Ok(()),
            denied => Err(ram::denied(&ram_action, &identity.arn, &identity.account_id, denied)),
        }
    }

    /// A copy of the state, with scheduled events applied up to the clock.
    pub fn state(&self) -> CloudState {
        let mut s = self.state.lock().expect("state lock");
        s.advance_to(self.clock.now());
        s.clone()
    }

    pub fn replace_state(&self, state: CloudState) {
        *self.state.lock().expect("state lock") = state;
    }

    /// Changes the state in place.
    pub fn update_state<R>(&self, f: impl FnOnce(&mut CloudState) -> R) -> R {
        f(&mut self.state.lock().expect("state lock"))
    }

    pub fn counters(&self) -> RequestCounters {
        self.counters.lock().expect("counters lock").clone()
    }

    pub fn reset_counters(&self) {
        *self.counters.lock().expect("counters lock") = RequestCounters::default();
        self.log.lock().expect("log lock").clear();
    }

    /// The newest requests, oldest first (at most [`REQUEST_LOG_CAPACITY`]).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.log.lock().expect("log lock").iter().cloned().collect()
    }

    fn record(&self, action: &str, params: &Params, info: &CallInfo, code: &str) {
        let seq = {
            let mut c = self.counters.lock().expect("counters lock");
            c.total += 1;
            *c.actions
                .entry(action.to_string())
                .or_default()
                .entry(code.to_string())
                .or_default() += 1;
            c.total
        };
        let params = params
            .pairs()
            .iter()
            .filter(|(k, _)| !PROTOCOL_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut log = self.log.lock().expect("log lock");
        if log.len() == REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(RequestRecord {
            seq,
            action: action.to_string(),
            at: self.clock.now(),
            params,
            access_key_id: info.access_key_id.clone(),
            code: code.to_string(),
            answer_lost: info.answer_lost,
            effects: info.effects.clone(),
        });
    }

    pub fn add_fault(&self, fault: Fault) -> Result<(), String> {
        fault.validate()?;
        self.faults.lock().expect("faults lock").add(fault);
        Ok(())
    }

    pub fn clear_faults(&self) {
        self.faults.lock().expect("faults lock").clear();
    }

    fn dispatch(
        &self,
        product: Product,
        action: &str,
        caller: &Caller,
        params: &Params,
        now: DateTime<Utc>,
        effects: &mut Vec<String>,
    ) -> ApiResult<Value> {
        let mut state = self.state.lock().expect("state lock");
        let state = &mut *state;
        // Reads see what has settled by now; writes queue behind what has not.
        state.advance_to(now);
        // What settled is an earlier write's doing; the journal is this request's.
        state.journal.clear();
        let answer = self.answer(state, product, action, caller, params, now);
        effects.append(&mut state.journal);
        answer
    }

    fn answer(
        &self,
        state: &mut CloudState,
        product: Product,
        action: &str,
        caller: &Caller,
        params: &Params,
        now: DateTime<Utc>,
    ) -> ApiResult<Value> {
        match (product, action) {
            (Product::Ecd, "DescribeFotaTasks") => ecd::describe_fota_tasks(state, params),
            (Product::Ecd, "UpdateFotaTask") => ecd::update_fota_task(state, params),
            (Product::Ecd, "DescribeDesktops") => ecd::describe_desktops(state, params),
            (Product::Ecd, "SetDesktopMaintenance") => ecd::set_desktop_maintenance(state, params, now),
            (Product::Ecd, "TagResources") => ecd::tag_resources(state, params),
            (Product::Ecd, "UntagResources") => ecd::untag_resources(state, params),
            (Product::Ecd, "ListTagResources") => ecd::list_tag_resources(state, params),
            (Product::Ecd, "DescribeDesktopSessions") => ecd::describe_desktop_sessions(state, params, now),
            (Product::Ecd, "DisconnectDesktopSessions") => ecd::disconnect_desktop_sessions(state, params, now),
            (Product::Ecd, "SendConsoleMessage") => ecd::send_console_message(state, params, now),
            (Product::Ecd, "DescribeConsoleMessages") => ecd::describe_console_messages(state, params),
            (Product::Ecd, "ApproveFotaUpdate") => fota::approve_fota_update(state, params, now),
            (Product::Ecd, "DescribeFotaPendingDesktops") => fota::describe_fota_pending_desktops(state, params),
            (Product::Ecd, "DescribeDesktopInfo") => fota::describe_desktop_info(state, params),
            (Product::SwasOpen, "ListCustomImages") => swas::list_custom_images(state, params),
            (Product::SwasOpen, "ModifyImageShareStatus") => {
                let mut book = self.shares.lock().expect("shares lock");
                // The quota and the ClientTokens are the account's, whichever key it uses.
                let account = self.keys.lock().expect("keys lock").account_of(caller.access_key_id());
                swas::modify_image_share_status(state, &mut book, &account, params, now)
            }
            (Product::AppstreamCenter, "ListAppInstanceGroup") => appstream::list_app_instance_group(state, params),
            (Product::AppstreamCenter, "ApproveOtaTask") => appstream::approve_ota_task(state, params, now),
            (Product::AppstreamCenter, "ListOtaTask") => appstream::list_ota_task(state, params, now),
            (Product::Sts, "GetCallerIdentity") => {
                sts::get_caller_identity(&self.keys.lock().expect("keys lock"), caller)
            }
            (Product::Sts, "AssumeRoleWithOIDC") => {
                sts::assume_role_with_oidc(&mut self.keys.lock().expect("keys lock"), params, now)
            }
            _ => Err(not_found_action(action, product.version())),
        }
    }
}

fn not_found_action(action: &str, version: &str) -> ApiFailure {
    ApiFailure::new(
        404,
        "InvalidAction.NotFound",
        format!("Specified api {action} of version {version} is not found."),
    )
}

pub fn router(world: Arc<World>) -> axum::Router {
    axum::Router::new()
        .route("/", any(rpc))
        .route("/_emulator/state", get(get_state).put(put_state))
        .route("/_emulator/requests", get(get_requests).delete(delete_requests))
        .route("/_emulator/clock", get(get_clock).post(post_clock))
        .route(
            "/_emulator/faults",
            get(get_faults).post(post_faults).delete(delete_faults),
        )
        .route("/_emulator/healthz", get(|| async { "ok" }))
        .with_state(world)
}

async fn rpc(
    State(world): State<Arc<World>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let request_id = new_request_id();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let query_pairs = parse_pairs(query.as_deref().unwrap_or(""));
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut all = query_pairs.clone();
    if is_form && !body.is_empty() {
        all.extend(parse_pairs(&String::from_utf8_lossy(&body)));
    }
    let params = Params::new(all);
    let req = SignedRequest {
        method: method.as_str(),
        headers: &headers,
        query: &query_pairs,
        params: &params,
        body: &body,
    };
    let (action, version) = req.action_and_version();
    let action = action.unwrap_or_default().to_string();
    let product = Product::from_version(version.unwrap_or_default());
    let mut info = CallInfo::default();
    let result = handle(&world, &req, &action, version, product, &mut info).await;
    let code = match &result {
        Ok(v) => v
            .get("Code")
            .and_then(Value::as_str)
            .filter(|c| *c != "success")
            .unwrap_or("success")
            .to_string(),
        Err(e) => e.code.clone(),
    };
    world.record(
        if action.is_empty() { "(none)" } else { &action },
        &params,
        &info,
        &code,
    );
    let product_name = product.map(|p| p.code()).unwrap_or("unknown");
    match result {
        Ok(mut body) => {
            if body.get("RequestId").is_none() {
                body["RequestId"] = json!(request_id);
            }
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => (e.status, Json(e.body(&request_id, &host, product_name))).into_response(),
    }
}

/// What a call's handling learnt besides its answer, for the request log.
#[derive(Default)]
struct CallInfo {
    /// Applied, and then answered with an injected error or too late.
    answer_lost: bool,
    access_key_id: String,
    /// What the call did (see [`RequestRecord::effects`]).
    effects: Vec<String>,
}

async fn handle(
    world: &World,
    req: &SignedRequest<'_>,
    action: &str,
    version: Option<&str>,
    product: Option<Product>,
    info: &mut CallInfo,
) -> ApiResult<Value> {
    if action.is_empty() {
        return Err(ApiFailure::missing("Action"));
    }
    let version = version.ok_or_else(|| ApiFailure::missing("Version"))?;
    let product = product.ok_or_else(|| not_found_action(action, version))?;
    let now = world.clock.now();
    let caller = if product == Product::Sts && action == "AssumeRoleWithOIDC" && req.is_unsigned() {
        // Alibaba's credential clients send this call the RPC way; refuse the shape they
        // never send, so a client that drifts from it fails here first.
        for name in ["Action", "Version", "Timestamp"] {
            if !req.query.iter().any(|(k, _)| k == name) {
                return Err(ApiFailure::new(
                    400,
                    "MissingParameter",
                    format!("{name} is mandatory in the query string of the anonymous AssumeRoleWithOIDC."),
                ));
            }
        }
        if !req
            .query
            .iter()
            .any(|(k, v)| k == "Format" && v.eq_ignore_ascii_case("JSON"))
        {
            return Err(ApiFailure::invalid(
                "Format",
                "only Format=JSON in the query is emulated (without it the cloud answers XML)",
            ));
        }
        Caller::Anonymous
    } else {
        let keys = world.keys.lock().expect("keys lock");
        let mut nonces = world.nonces.lock().expect("nonces lock");
        verify(req, &keys, &mut nonces, now)?
    };
    info.access_key_id = caller.access_key_id().to_string();
    world.authorize(product, action, &caller, req.params)?;
    let outcome = world.faults.lock().expect("faults lock").apply(action);
    if outcome.after_apply {
        let applied = world.dispatch(product, action, &caller, req.params, now, &mut info.effects)?;
        info.answer_lost = true;
        tokio::time::sleep(outcome.latency).await;
        return match outcome.error {
            Some(err) => Err(err),
            None => Ok(applied),
        };
    }
    if !outcome.latency.is_zero() {
        tokio::time::sleep(outcome.latency).await;
    }
    if let Some(err) = outcome.error {
        return Err(err);
    }
    world.dispatch(product, action, &caller, req.params, now, &mut info.effects)
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

async fn get_state(State(world): State<Arc<World>>) -> Json<CloudState> {
    Json(world.state())
}

async fn put_state(State(world): State<Arc<World>>, body: Bytes) -> Response {
    match serde_json::from_slice::<CloudState>(&body)
        .map_err(|e| e.to_string())
        .and_then(|state| state.validate().map(|()| state))
    {
        Ok(state) => {
            world.replace_state(state);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(format!("invalid state: {e}")),
    }
}

/// The counters, and the newest requests one by one.
async fn get_requests(State(world): State<Arc<World>>) -> Json<Value> {
    let mut body = serde_json::to_value(world.counters()).unwrap_or_default();
    body["log"] = serde_json::to_value(world.request_log()).unwrap_or_default();
    Json(body)
}

async fn delete_requests(State(world): State<Arc<World>>) -> StatusCode {
    world.reset_counters();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClockChange {
    advance_seconds: Option<i64>,
    now: Option<DateTime<Utc>>,
}

async fn get_clock(State(world): State<Arc<World>>) -> Json<Value> {
    Json(json!({"now": world.clock.now()}))
}

async fn post_clock(State(world): State<Arc<World>>, body: Bytes) -> Response {
    let change: ClockChange = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad_request(format!("invalid clock change: {e}")),
    };
    let now = match (change.advance_seconds, change.now) {
        (Some(s), None) => {
            let moved = chrono::Duration::try_seconds(s)
                .ok_or_else(|| format!("advanceSeconds: {s} is out of range"))
                .and_then(|by| world.clock.advance(by));
            match moved {
                Ok(now) => now,
                Err(e) => return bad_request(e),
            }
        }
        (None, Some(t)) => world.clock.set(t),
        _ => return bad_request("give exactly one of advanceSeconds or now".into()),
    };
    Json(json!({"now": now})).into_response()
}

async fn get_faults(State(world): State<Arc<World>>) -> Json<Vec<Fault>> {
    Json(world.faults.lock().expect("faults lock").list().to_vec())
}

async fn post_faults(State(world): State<Arc<World>>, body: Bytes) -> Response {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("invalid fault: {e}")),
    };
    match world.add_fault(fault) {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => bad_request(format!("invalid fault: {e}")),
    }
}

async fn delete_faults(State(world): State<Arc<World>>) -> StatusCode {
    world.clear_faults();
    StatusCode::NO_CONTENT
}
