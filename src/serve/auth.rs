//! Who may do what: the server's admin key, scoped keys kept hashed in the store, and signed
//! session tokens (the seed 000 legacy server's format) that stand in for the key that made them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{KeyInit, Mac};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::connections::Unauthenticated;
use super::error::{ApiError, ApiJson};
use super::limits::RateLimits;
use super::socket::header_is;
use crate::proto::{
    CreateKey, CreatedKey, ErrorBody, KeyInfo, Scope, SessionRequest, SessionToken,
};
use crate::store::{SharedStore, StoreError, StoredKey, StoredSession};

/// Who a request comes from, once its credentials are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub scope: Scope,
    /// What holds this power: a stored key's id, the admin key's tag (`admin-` and part of its
    /// hash, so that sessions made with an old admin key die with it), or `local` for the
    /// machine's user on a server without keys.
    pub holder: String,
    /// The credentials were a session token, which may not make further sessions.
    pub via_session: bool,
    /// The session behind a session token.
    pub session_id: Option<String>,
}

/// The holder of a server without keys: whoever is on this machine.
const LOCAL_HOLDER: &str = "local";

/// How long session tokens and sessions live, and how many there may be.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// A token is refused this long after it was issued.
    pub ttl: Duration,
    /// A session unused this long is removed, and its tokens with it.
    pub idle: Duration,
    pub max_sessions: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("Session limit reached ({0} sessions); try later or let idle sessions expire")]
    SessionLimit(usize),
    #[error("session {0} belongs to another key")]
    SessionTaken(String),
    #[error(
        "`{0}` is not a session id: use 1 to 128 letters, digits, `-`, `_` or `.` (or leave it out)"
    )]
    BadSessionId(String),
    #[error("a session token cannot make sessions; ask with the key itself")]
    SessionFromSession,
    #[error("a session token cannot create, list or revoke keys; use the key itself")]
    KeysFromSession,
    #[error("the key was revoked")]
    Revoked,
    #[error("no key with id or name `{0}`")]
    NoSuchKey(String),
    #[error("more than one key is named `{0}`: revoke it by id")]
    AmbiguousName(String),
    #[error("the key name is too long (at most 200 characters)")]
    NameTooLong,
    #[error(
        "a key named `{name}` exists already (id {id}): pick another name, or revoke that key \
         first (`victor keys revoke {id}`)"
    )]
    NameTaken { name: String, id: String },
    #[error("cannot read or create the session secret {path}: {reason}")]
    Secret {
        path: String,
        reason: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> ApiError {
        let message = error.to_string();
        match error {
            AccessError::SessionLimit(_) => ApiError::too_many("session_limit", message, 60),
            AccessError::SessionTaken(_)
            | AccessError::SessionFromSession
            | AccessError::KeysFromSession => ApiError::forbidden(message),
            AccessError::Revoked => ApiError::unauthorized(),
            AccessError::BadSessionId(_) | AccessError::NameTooLong => ApiError::invalid(message),
            AccessError::NoSuchKey(_) => ApiError::not_found(message),
            AccessError::AmbiguousName(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            AccessError::NameTaken { .. } => {
                ApiError::new(StatusCode::CONFLICT, "name_taken", message)
            }
            AccessError::Secret { .. } | AccessError::Store(_) => {
                tracing::error!(error = %message, "access store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not record this; see its log",
                )
            }
        }
    }
}

struct KeyEntry {
    id: String,
    name: Option<String>,
    scope: Scope,
    created_at: Timestamp,
    last_used_at: Option<Timestamp>,
}

struct SessionEntry {
    holder: String,
    scope: Scope,
    created_at: Timestamp,
    last_seen_at: Timestamp,
}

/// The keys and sessions of one server. Checks happen in memory; the store keeps them across
/// restarts, and last-use times reach it in batches from [`Access::sweep`].
pub struct Access {
    admin_key: Option<String>,
    /// The admin key's holder tag (see [`Principal::holder`]).
    admin_holder: String,
    /// By the SHA-256 of the key: a lookup never compares plain keys.
    keys: RwLock<HashMap<[u8; 32], KeyEntry>>,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    /// Uses since the last sweep: (keys, sessions) by id.
    used: Mutex<(HashMap<String, Timestamp>, HashMap<String, Timestamp>)>,
    secret: [u8; 32],
    policy: SessionPolicy,
    store: SharedStore,
}

impl Access {
    /// Loads the keys and sessions, and the session secret from `data_dir` (created on first
    /// use, mode 0600) so that tokens survive a restart.
    pub async fn load(
        data_dir: &Path,
        admin_key: Option<String>,
        policy: SessionPolicy,
        store: SharedStore,
    ) -> Result<Access, AccessError> {
        // Shared with the other nodes of a shared store, so that their tokens hold here.
        let secret = store
            .session_secret(load_secret(&data_dir.join("session.secret"))?)
            .await?;
        let mut keys = HashMap::new();
        for key in store.list_keys().await? {
            let Some(hash) = decode_hash(&key.hash) else {
                tracing::warn!(key = %key.id, "ignoring a stored key with a malformed hash");
                continue;
            };
            keys.insert(
                hash,
                KeyEntry {
                    id: key.id,
                    name: key.name,
                    scope: key.scope,
                    created_at: key.created_at,
                    last_used_at: key.last_used_at,
                },
            );
        }
        let sessions = store
            .list_sessions()
            .await?
            .into_iter()
            .map(|s| {
                let entry = SessionEntry {
                    holder: s.holder,
                    scope: s.scope,
                    created_at: s.created_at,
                    last_seen_at: s.last_seen_at,
                };
                (s.id, entry)
            })
            .collect();
        let admin_holder = match &admin_key {
            Some(key) => format!("admin-{}", hex_encode(&Sha256::digest(key.as_bytes())[..8])),
            None => LOCAL_HOLDER.to_string(),
        };
        let access = Access {
            admin_key,
            admin_holder,
            keys: RwLock::new(keys),
            sessions: Mutex::new(sessions),
            used: Mutex::default(),
            secret,
            policy,
            store,
        };
        access.sweep().await;
        Ok(access)
    }

    /// Whether requests need credentials at all: only when the server has an admin key. Without
    /// one it listens on loopback only, where the machine's user is trusted.
    pub fn required(&self) -> bool {
        self.admin_key.is_some()
    }

    /// The machine's own user (the Unix socket, or a server without keys on loopback): the
    /// admin key's power, without its key.
    pub fn owner(&self) -> Principal {
        Principal {
            scope: Scope::Admin,
            holder: self.admin_holder.clone(),
            via_session: false,
            session_id: None,
        }
    }

    /// The principal an API key or session token stands for, if it is valid now.
    pub fn check(&self, credential: &str) -> Option<Principal> {
        if credential.is_empty() {
            return None;
        }
        if let Some(admin) = &self.admin_key
            && bool::from(credential.as_bytes().ct_eq(admin.as_bytes()))
        {
            return Some(self.owner());
        }
        let hash: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        if let Some(key) = self.keys.read().ok()?.get(&hash) {
            self.note_use(true, &key.id);
            return Some(Principal {
                scope: key.scope,
                holder: key.id.clone(),
                via_session: false,
                session_id: None,
            });
        }
        self.check_session_token(credential)
    }

    /// Whether what a principal was granted still holds: its key not revoked, its session not
    /// ended. Long-lived streams ask before each request and at each heartbeat.
    pub fn still_valid(&self, principal: &Principal) -> bool {
        if !self.holder_live(&principal.holder) {
            return false;
        }
        match &principal.session_id {
            None => true,
            Some(id) => match self.sessions.lock() {
                Ok(mut sessions) => match sessions.get_mut(id) {
                    Some(session) if self.within_lifetime(session.created_at) => {
                        session.last_seen_at = Timestamp::now();
                        drop(sessions);
                        self.note_use(false, id);
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            },
        }
    }

    /// Whether a holder still has its power: the current admin key, a key not revoked, or
    /// the machine's user while the server has no keys.
    fn holder_live(&self, holder: &str) -> bool {
        if holder == self.admin_holder {
            return true;
        }
        if holder == LOCAL_HOLDER {
            return !self.required();
        }
        self.keys
            .read()
            .is_ok_and(|keys| keys.values().any(|key| key.id == holder))
    }

    /// A session lives at most the TTL from its creation, however often it is renewed.
    fn within_lifetime(&self, created_at: Timestamp) -> bool {
        let age = Timestamp::now().as_second() - created_at.as_second();
        age <= i64::try_from(self.policy.ttl.as_secs()).unwrap_or(i64::MAX)
    }

    fn check_session_token(&self, token: &str) -> Option<Principal> {
        let decoded = URL_SAFE
            .decode(token)
            .or_else(|_| URL_SAFE_NO_PAD.decode(token))
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let mut parts = text.rsplitn(3, ':');
        let (signature, issued_at, session_id) = (parts.next()?, parts.next()?, parts.next()?);
        let signature = hex_decode(signature)?;
        let mut sessions = self.sessions.lock().ok()?;
        let session = sessions.get_mut(session_id)?;
        // Signed for this very session: a token of an earlier session with the same id (ended,
        // then made again by someone else) does not verify.
        let mut mac = self.session_mac(session_id, session);
        mac.update(format!("{session_id}:{issued_at}").as_bytes());
        mac.verify_slice(&signature).ok()?;
        let issued_at: i64 = issued_at.parse().ok()?;
        let age = Timestamp::now().as_second().checked_sub(issued_at)?;
        // A token from the future (beyond clock jitter) or past its lifetime is refused, and
        // so is every token of a session past its lifetime or whose key is gone.
        if age < -60
            || age > i64::try_from(self.policy.ttl.as_secs()).unwrap_or(i64::MAX)
            || !self.within_lifetime(session.created_at)
            || !self.holder_live(&session.holder)
        {
            return None;
        }
        session.last_seen_at = Timestamp::now();
        let principal = Principal {
            scope: session.scope,
            holder: session.holder.clone(),
            via_session: true,
            session_id: Some(session_id.to_string()),
        };
        drop(sessions);
        self.note_use(false, session_id);
        Some(principal)
    }

    /// The HMAC that signs one session's tokens: keyed by the server's secret and the session
    /// itself (its id, creation time and holder), so that a token is worth nothing once its
    /// session is gone, even when the id is taken again.
    fn session_mac(&self, id: &str, session: &SessionEntry) -> hmac::Hmac<Sha256> {
        let mut derive = hmac_with(&self.secret);
        derive.update(
            format!(
                "session:{id}:{}:{}",
                session.created_at.as_microsecond(),
                session.holder
            )
            .as_bytes(),
        );
        hmac_with(&derive.finalize().into_bytes())
    }

    fn note_use(&self, key: bool, id: &str) {
        if let Ok(mut used) = self.used.lock() {
            let map = if key { &mut used.0 } else { &mut used.1 };
            map.insert(id.to_string(), Timestamp::now());
        }
    }

    /// A session token for `principal`: for the session it names (if that session is its own),
    /// or for a new one.
    pub async fn issue_session(
        &self,
        principal: &Principal,
        session_id: Option<String>,
    ) -> Result<SessionToken, AccessError> {
        if principal.via_session {
            return Err(AccessError::SessionFromSession);
        }
        let now = Timestamp::now();
        let id = match session_id {
            Some(id) if !valid_session_id(&id) => return Err(AccessError::BadSessionId(id)),
            Some(id) => id,
            None => uuid::Uuid::now_v7().to_string(),
        };
        let holder = &principal.holder;
        let mut mac;
        let (session, evicted) = {
            let mut sessions = self
                .sessions
                .lock()
                .map_err(|_| StoreError::Corrupt("session table poisoned".into()))?;
            // Checked under the lock that revocation takes too: a key revoked while this
            // request was under way makes no session.
            if !self.holder_live(&principal.holder) {
                return Err(AccessError::Revoked);
            }
            let mut evicted = None;
            // A session past its lifetime starts over under the same id: new tokens, and the
            // old ones (signed for the old session) stay dead.
            if sessions
                .get(&id)
                .is_some_and(|s| &s.holder == holder && !self.within_lifetime(s.created_at))
            {
                sessions.remove(&id);
            }
            match sessions.get(&id) {
                Some(existing) if &existing.holder != holder => {
                    return Err(AccessError::SessionTaken(id));
                }
                Some(_) => {}
                None => {
                    // One holder may fill half the table at most: past that, its own least
                    // recently used session makes room, and nobody else is shut out.
                    let own = sessions.iter().filter(|(_, s)| &s.holder == holder);
                    if own.clone().count() >= self.per_holder_sessions() {
                        evicted = own
                            .min_by_key(|(_, s)| s.last_seen_at)
                            .map(|(id, _)| id.clone());
                    } else if sessions.len() >= self.policy.max_sessions {
                        return Err(AccessError::SessionLimit(self.policy.max_sessions));
                    }
                    if let Some(old) = &evicted {
                        sessions.remove(old);
                    }
                    sessions.insert(
                        id.clone(),
                        SessionEntry {
                            holder: holder.clone(),
                            scope: principal.scope,
                            created_at: now,
                            last_seen_at: now,
                        },
                    );
                }
            }
            let entry = sessions
                .get_mut(&id)
                .ok_or_else(|| StoreError::Corrupt("session vanished".into()))?;
            entry.last_seen_at = now;
            mac = self.session_mac(&id, entry);
            let session = StoredSession {
                id: id.clone(),
                holder: entry.holder.clone(),
                scope: entry.scope,
                created_at: entry.created_at,
                last_seen_at: entry.last_seen_at,
            };
            (session, evicted)
        };
        let created_at = session.created_at;
        if let Some(old) = evicted {
            self.store.delete_sessions(vec![old]).await?;
        }
        if let Err(e) = self.store.put_session(session).await {
            if let Ok(mut sessions) = self.sessions.lock() {
                sessions.remove(&id);
            }
            return Err(e.into());
        }
        let issued_at = now.as_second();
        mac.update(format!("{id}:{issued_at}").as_bytes());
        let signature = hex_encode(&mac.finalize().into_bytes());
        let expires_at = created_at
            .checked_add(jiff::SignedDuration::try_from(self.policy.ttl).unwrap_or_default())
            .unwrap_or(Timestamp::MAX);
        Ok(SessionToken {
            session_token: URL_SAFE.encode(format!("{id}:{issued_at}:{signature}")),
            session_id: id,
            expires_at,
        })
    }

    fn per_holder_sessions(&self) -> usize {
        (self.policy.max_sessions / 2).max(1)
    }

    /// Makes a key; the plain key is in the answer and nowhere else.
    pub async fn create_key(
        &self,
        scope: Scope,
        name: Option<String>,
    ) -> Result<CreatedKey, AccessError> {
        if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
            return Err(AccessError::NameTooLong);
        }
        let key = format!("vk_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let id = hex_encode(&random_bytes::<6>());
        let created_at = Timestamp::now();
        let entry = KeyEntry {
            id: id.clone(),
            name: name.clone(),
            scope,
            created_at,
            last_used_at: None,
        };
        let info = key_info(&entry);
        // The name is taken in the table first, so that two keys made at once cannot both
        // have it; nobody knows the key before this returns, so it is of no use until then.
        {
            let mut keys = self
                .keys
                .write()
                .map_err(|_| StoreError::Corrupt("key table poisoned".into()))?;
            if let Some(name) = &name
                && let Some(holder) = keys.values().find(|key| key.name.as_ref() == Some(name))
            {
                return Err(AccessError::NameTaken {
                    name: name.clone(),
                    id: holder.id.clone(),
                });
            }
            keys.insert(hash, entry);
        }
        let stored = self
            .store
            .put_key(StoredKey {
                id,
                name,
                scope,
                hash: hex_encode(&hash),
                created_at,
                last_used_at: None,
            })
            .await;
        if let Err(e) = stored {
            if let Ok(mut keys) = self.keys.write() {
                keys.remove(&hash);
            }
            return Err(e.into());
        }
        Ok(CreatedKey { key, info })
    }

    pub fn list_keys(&self) -> Vec<KeyInfo> {
        let mut list: Vec<KeyInfo> = self
            .keys
            .read()
            .map(|keys| keys.values().map(key_info).collect())
            .unwrap_or_default();
        if let Ok(used) = self.used.lock() {
            for key in &mut list {
                if let Some(at) = used.0.get(&key.id) {
                    key.last_used_at = Some(*at);
                }
            }
        }
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        list
    }

    /// Revokes a key (by id, or by a name only one key has) and ends every session made with
    /// it, at once.
    pub async fn revoke_key(&self, id_or_name: &str) -> Result<KeyInfo, AccessError> {
        let (hash, info) = {
            let keys = self
                .keys
                .read()
                .map_err(|_| StoreError::Corrupt("key table poisoned".into()))?;
            let by_id = keys.iter().find(|(_, key)| key.id == id_or_name);
            let found = match by_id {
                Some(found) => found,
                None => {
                    let mut named = keys
                        .iter()
                        .filter(|(_, key)| key.name.as_deref() == Some(id_or_name));
                    match (named.next(), named.next()) {
                        (Some(found), None) => found,
                        (Some(_), Some(_)) => {
                            return Err(AccessError::AmbiguousName(id_or_name.to_string()));
                        }
                        _ => return Err(AccessError::NoSuchKey(id_or_name.to_string())),
                    }
                }
            };
            (*found.0, key_info(found.1))
        };
        // The store first: a revocation that failed is not half done.
        self.store.delete_key(&info.id).await?;
        if let Ok(mut keys) = self.keys.write() {
            keys.remove(&hash);
        }
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|_, session| session.holder != info.id);
        }
        Ok(info)
    }

    /// Removes idle sessions and records when keys and sessions were last used. Runs every
    /// few minutes.
    pub async fn sweep(&self) {
        let idle_since = Timestamp::now()
            .checked_sub(jiff::SignedDuration::try_from(self.policy.idle).unwrap_or_default())
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let idle: Vec<String> = match self.sessions.lock() {
            Ok(mut sessions) => {
                let idle = sessions
                    .iter()
                    .filter(|(_, s)| {
                        s.last_seen_at < idle_since
                            || !self.within_lifetime(s.created_at)
                            || !self.holder_live(&s.holder)
                    })
                    .map(|(id, _)| id.clone())
                    .collect::<Vec<_>>();
                for id in &idle {
                    sessions.remove(id);
                }
                idle
            }
            Err(_) => Vec::new(),
        };
        let (keys, sessions) = match self.used.lock() {
            Ok(mut used) => std::mem::take(&mut *used),
            Err(_) => Default::default(),
        };
        if let Ok(mut entries) = self.keys.write() {
            for entry in entries.values_mut() {
                if let Some(at) = keys.get(&entry.id) {
                    entry.last_used_at = Some(*at);
                }
            }
        }
        let sessions = sessions
            .into_iter()
            .filter(|(id, _)| !idle.contains(id))
            .collect();
        let outcome = async {
            if !idle.is_empty() {
                tracing::info!(count = idle.len(), "removing idle or ended sessions");
                self.store.delete_sessions(idle).await?;
            }
            self.store
                .record_use(keys.into_iter().collect(), sessions)
                .await
        };
        if let Err(e) = outcome.await {
            tracing::warn!(error = %e, "could not record key and session use");
        }
    }

    /// How often [`Access::sweep`] should run: every 5 minutes, or sooner for short idle times.
    pub fn sweep_interval(&self) -> Duration {
        (self.policy.idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(300))
    }
}

fn hmac_with(key: &[u8]) -> hmac::Hmac<Sha256> {
    // HMAC takes a key of any length.
    <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
}

/// What a route asks of its caller, declared where the route is added (see `Routes` in
/// [`super`]): no route is reachable without saying it, and none is judged by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Anyone: health checks and the API's description.
    Nothing,
    /// A key, or a session token standing in for one, with at least this scope.
    Scope(Scope),
    /// A key itself with at least this scope, never a session token: a token travels in URLs
    /// and stands in for its key only until it expires, so it must not mint keys that outlive
    /// it or revoke the key it came from.
    Key(Scope),
    /// A WebSocket ([`super::socket`]) for at least this scope: credentials on the upgrade,
    /// or none, and then its first message authenticates it.
    Socket(Scope),
}

impl Needs {
    /// `methods`, answered only to callers that have what this asks.
    pub(super) fn guard(self, methods: MethodRouter<AppState>) -> MethodRouter<AppState> {
        let (scope, takes) = match self {
            Needs::Nothing => return methods,
            Needs::Scope(scope) => (scope, Credential::KeyOrSession),
            Needs::Key(scope) => (scope, Credential::Key),
            Needs::Socket(scope) => (scope, Credential::Socket),
        };
        let needs = Gate { scope, takes };
        methods.route_layer(middleware::from_fn(move |request, next| {
            gate(needs, request, next)
        }))
    }
}

/// What a route that asks for credentials ([`Needs`] but `Nothing`) lets through.
#[derive(Debug, Clone, Copy)]
struct Gate {
    scope: Scope,
    takes: Credential,
}

/// Which credentials a gated route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    KeyOrSession,
    Key,
    /// A key or session on the upgrade, or none: the socket's first message then.
    Socket,
}

/// Tells the socket driver that a route is a socket route, and the scope it needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct SocketRoute(pub Scope);

/// Who sent a request, as its credentials say. Set on every request before routing by
/// [`identify`]; each route's [`Needs`] judges it.
#[derive(Clone)]
pub(super) struct Caller {
    identity: Identity,
    /// The per-key rate limits, counted on the routes that need credentials (none on the Unix
    /// socket or on a server without keys).
    limits: Option<Arc<RateLimits>>,
}

#[derive(Clone)]
enum Identity {
    Known(Principal),
    /// Wrong or expired credentials.
    Refused,
    /// No credentials.
    Anonymous,
}

impl Caller {
    /// Whether the caller's credentials are good: only then may it learn which routes there
    /// are (a 404 or 405 rather than 401), or have its request body read.
    pub(super) fn identified(&self) -> bool {
        matches!(self.identity, Identity::Known(_))
    }

    /// Who the caller is, when its credentials are good: for surfaces that take credentials
    /// in their own handshake as well (Socket.IO's `auth`).
    pub(super) fn principal(&self) -> Option<&Principal> {
        match &self.identity {
            Identity::Known(principal) => Some(principal),
            Identity::Refused | Identity::Anonymous => None,
        }
    }
}

/// Reads the request's credentials (API key or session token, as `Authorization: Bearer`,
/// `?api_key=` or `?session_token=`) into its [`Caller`]. The Unix socket and a server
/// without keys need none: the caller is the machine's user.
pub(super) async fn identify(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = if state.local || !state.access.required() {
        Caller {
            identity: Identity::Known(state.access.owner()),
            limits: None,
        }
    } else {
        let identity = match credential(&request) {
            Some(offered) => match state.access.check(&offered) {
                Some(principal) => Identity::Known(principal),
                None => Identity::Refused,
            },
            None => Identity::Anonymous,
        };
        Caller {
            identity,
            limits: Some(state.limits.clone()),
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Lets a request through to its route when its caller has what the route needs (and is
/// within the key's rate), with the caller's [`Principal`] for the handler.
async fn gate(needs: Gate, mut request: Request, next: Next) -> Response {
    let Gate { scope, takes } = needs;
    let socket = takes == Credential::Socket;
    if socket {
        request.extensions_mut().insert(SocketRoute(scope));
    }
    let caller = request.extensions_mut().remove::<Caller>();
    let principal = match caller.as_ref().map(|caller| &caller.identity) {
        Some(Identity::Known(principal)) => principal.clone(),
        // The socket's first message must then authenticate it.
        Some(Identity::Anonymous)
            if socket && header_is(request.headers(), header::UPGRADE, "websocket") =>
        {
            return next.run(request).await;
        }
        Some(Identity::Anonymous | Identity::Refused) | None => {
            return ApiError::unauthorized().into_response();
        }
    };
    if let Some(limits) = caller.and_then(|caller| caller.limits)
        && let Err(limited) = limits.check_key(&principal.holder)
    {
        return limited.into_response();
    }
    if principal.scope < scope {
        return forbidden(principal.scope, scope).into_response();
    }
    if takes == Credential::Key && principal.via_session {
        return ApiError::from(AccessError::KeysFromSession).into_response();
    }
    // A request that passed: its connection no longer counts as unauthenticated.
    if let Some(connection) = request.extensions().get::<Unauthenticated>() {
        connection.authenticated();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The API key or session token a request offers.
fn credential(request: &Request) -> Option<String> {
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, credential) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(credential)
        })
        .map(str::trim)
        .map(str::to_string);
    from_header.or_else(|| {
        request.uri().query().and_then(|query| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .ok()?
                .into_iter()
                .find(|(name, _)| name == "api_key" || name == "session_token")
                .map(|(_, value)| value)
        })
    })
}

/// A 403 that says what the caller has and what it would need.
pub fn forbidden(has: Scope, needs: Scope) -> ApiError {
    ApiError::forbidden(format!(
        "this key has scope {has}; this needs scope {needs} (create one with `victor keys create --scope {needs}`)"
    ))
}

fn key_info(entry: &KeyEntry) -> KeyInfo {
    KeyInfo {
        id: entry.id.clone(),
        name: entry.name.clone(),
        scope: entry.scope,
        created_at: entry.created_at,
        last_used_at: entry.last_used_at,
    }
}

fn valid_session_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Bytes from the operating system's random source. A machine without one cannot keep
/// secrets at all, so that is fatal rather than an error to handle.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    if let Err(e) = getrandom::fill(&mut bytes) {
        panic!("the operating system's random source failed: {e}");
    }
    bytes
}

/// The 32-byte secret that signs session tokens, kept in the data dir (mode 0600).
fn load_secret(path: &Path) -> Result<[u8; 32], AccessError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let error = |reason| AccessError::Secret {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => decode_hash(text.trim()).ok_or_else(|| {
            error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not 64 hex digits; delete it to make a new one (existing session tokens end)",
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_bytes::<32>();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(error)?;
            file.write_all(hex_encode(&secret).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(error)?;
            Ok(secret)
        }
        Err(e) => Err(error(e)),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    hex_decode(text)?.try_into().ok()
}

/// Creates a key with a scope; the plain key is in this answer only.
#[utoipa::path(post, path = "/api/v1/keys", tag = "access", request_body = CreateKey,
    responses((status = 201, body = CreatedKey),
        (status = 403, description = "Not an admin key, or a session token", body = ErrorBody),
        (status = 409, description = "Another key has this name", body = ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let created = state.access.create_key(request.scope, request.name).await?;
    tracing::info!(key = %created.info.id, scope = %created.info.scope, "key created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// The keys (never the keys themselves: their ids, names and scopes).
#[utoipa::path(get, path = "/api/v1/keys", tag = "access",
    responses((status = 200, body = Vec<KeyInfo>), (status = 403, body = ErrorBody)))]
pub async fn list_keys(State(state): State<AppState>) -> Json<Vec<KeyInfo>> {
    Json(state.access.list_keys())
}

/// Revokes a key, by id or by its name, and ends its sessions.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "access",
    params(("id" = String, Path, description = "The key's id, or a name only one key has")),
    responses((status = 200, body = KeyInfo), (status = 404, body = ErrorBody),
        (status = 409, description = "More than one key has this name: use the id",
            body = ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<KeyInfo>, ApiError> {
    let revoked = state.access.revoke_key(&id).await?;
    tracing::info!(key = %revoked.id, "key revoked");
    Ok(Json(revoked))
}

/// A session token (the seed 000 legacy server's route): it stands in for the credentials of
/// this request, with the same scope, until it expires or the session idles out. A body is
/// optional; `session_id` reuses a session this key made.
#[utoipa::path(post, path = "/session/token", tag = "access",
    request_body(content = Option<SessionRequest>),
    responses((status = 200, body = SessionToken),
        (status = 403, description = "The session is another key's, or the request came with \
            a session token", body = ErrorBody),
        (status = 422, description = "A session_id of other characters or length",
            body = ErrorBody),
        (status = 429, description = "Session limit reached", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait")))))]
pub async fn session_token(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    body: bytes::Bytes,
) -> Result<Json<SessionToken>, ApiError> {
    // No body and a JSON `null` both ask for nothing in particular.
    let request: SessionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SessionRequest::default()
    } else {
        super::error::parse_json::<Option<SessionRequest>>(&body)?.unwrap_or_default()
    };
    Ok(Json(
        state
            .access
            .issue_session(&principal, request.session_id)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let bytes = random_bytes::<32>();
        assert_eq!(decode_hash(&hex_encode(&bytes)), Some(bytes));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }
}
