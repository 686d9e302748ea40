//! The native transport's JavaScript surface: `listen()`, `attach()`, `manager.token`, and
//! `NativeSocket`, the handle `getConnections()` shows for a Rust-owned socket.

use std::sync::{Arc, Weak};

use napi::bindgen_prelude::{Function, FunctionCallContext, Object, This, Unknown};
use napi::{Env, JsValue, Status};
use napi_derive::napi;
use tokio_tungstenite::tungstenite::Message;

use super::error::{self, ErrorKind};
use super::js::{Called, Js, Raw};
use super::manager::WebSocketManager;
use crate::handshake::request::pairs_from_raw_headers;
use crate::handshake::{is_loopback_addr, UpgradeRequest, DEFAULT_PATH};
use crate::hub::Hub;
use crate::outbox::CloseReason;
use crate::registry::{RecordKey, Transport};
use crate::runtime;
use crate::transport::{listener, Endpoint};

/// Where `listen()` accepts connections.
#[napi(object)]
#[derive(Default)]
pub struct ListenOptions {
    /// TCP port; `0` picks a free one (read it from the result).
    /// @default 0
    pub port: Option<f64>,
    /// Address to bind. Loopback by default: the server is for this machine.
    /// @default '127.0.0.1'
    pub host: Option<String>,
    /// The only path upgrades are accepted on (other paths get 404).
    /// @default '/ws'
    pub path: Option<String>,
    /// Sent to each client in the welcome message.
    pub cwd: Option<String>,
}

/// Where a listener is bound.
#[napi(object)]
pub struct ListenAddress {
    pub port: u32,
    pub host: String,
}

/// How `attach()` takes upgrades from an existing `http.Server`.
#[napi(object)]
#[derive(Default)]
pub struct AttachOptions {
    /// Upgrades on this path are handled; every other upgrade is left to the server's other
    /// `'upgrade'` listeners.
    /// @default '/ws'
    pub path: Option<String>,
    /// Sent to each client in the welcome message.
    pub cwd: Option<String>,
}

/// An `'upgrade'` listener installed by `attach()`, removed again by `shutdown()`.
pub struct Attachment {
    server: super::js::JsRef,
    listener: super::js::JsRef,
}

impl Attachment {
    pub fn detach(&self, js: Js) {
        let Ok(event) = js.create_string("upgrade") else {
            return;
        };
        let args = [event, self.listener.value(js)];
        if let Some(Called::Threw(error)) =
            js.call_method(self.server.value(js), c"removeListener", &args)
        {
            tracing::warn!(error = js.describe(error), "cannot detach from the server");
        }
    }
}

fn endpoint_for(
    manager: &WebSocketManager,
    path: Option<String>,
    cwd: Option<String>,
) -> Result<Arc<Endpoint>, String> {
    let path = path.unwrap_or_else(|| DEFAULT_PATH.to_owned());
    if !path.starts_with('/') {
        return Err(format!("path must start with '/' (got {path:?})"));
    }
    let mut policy = manager.shared.policy.clone();
    policy.path = path;
    Ok(Arc::new(Endpoint {
        policy,
        cwd: cwd.map(Arc::from),
    }))
}

#[napi]
impl WebSocketManager {
    /// Accepts WebSocket connections on a port of the manager's own. Resolves to the bound
    /// address once listening. The process stays alive while the listener (or any native
    /// connection) exists, until `shutdown()`.
    #[napi(catch_unwind, ts_return_type = "Promise<ListenAddress>")]
    pub fn listen<'env>(
        &self,
        env: &'env Env,
        this: This,
        options: Option<ListenOptions>,
    ) -> napi::Result<Object<'env>> {
        let shared = &self.shared;
        if shared.hub.is_shut_down() {
            return Err(error::shut_down(env));
        }
        self.pin(env, this.object.raw())?;
        let options = options.unwrap_or_default();
        let invalid = |message: String| {
            error::throw(
                env,
                ErrorKind::RangeError,
                &message,
                error::codes::INVALID_OPTION,
            )
        };
        let port = match options.port {
            None => 0,
            Some(p) if p.fract() == 0.0 && (0.0..=65535.0).contains(&p) => p as u16,
            Some(p) => {
                return Err(invalid(format!(
                    "port must be a whole number 0-65535 (got {p})"
                )))
            }
        };
        let host = options.host.unwrap_or_else(|| "127.0.0.1".to_owned());
        let endpoint = endpoint_for(self, options.path, options.cwd).map_err(invalid)?;

        // Counted as live from now, so the process cannot exit between this call and the
        // listener's start.
        let pending = shared.hub.active_guard();
        shared.reconcile_keep_alive(env);
        let (deferred, promise) = env.create_deferred::<ListenAddress, _>()?;
        let hub = Arc::clone(&shared.hub);
        runtime::handle().spawn(async move {
            let _pending = pending;
            match listener::listen(hub, &host, port, endpoint).await {
                Ok(address) => deferred.resolve(move |_| {
                    Ok(ListenAddress {
                        port: u32::from(address.port()),
                        host: address.ip().to_string(),
                    })
                }),
                Err(error) => deferred.reject(napi::Error::new(
                    Status::GenericFailure,
                    format!("listen on {host}:{port} failed: {error}"),
                )),
            }
        });
        Ok(promise)
    }

    /// Takes WebSocket upgrades on `path` from an existing `http.Server`, which keeps
    /// serving everything else on its port. Each upgrade's socket is handed to the native
    /// core. On TLS servers and on Windows, where a socket cannot be handed over, upgrades
    /// are accepted through the `ws` package (if installed) as JavaScript sockets instead.
    #[napi(
        catch_unwind,
        ts_args_type = "server: import('http').Server, options?: AttachOptions"
    )]
    pub fn attach(
        &self,
        env: Env,
        this: This,
        server: Unknown,
        options: Option<AttachOptions>,
    ) -> napi::Result<()> {
        let shared = &self.shared;
        if shared.hub.is_shut_down() {
            return Err(error::shut_down(&env));
        }
        let js = Js::new(&env);
        if !js.is_object(server.raw()) {
            return Err(error::throw(
                &env,
                ErrorKind::TypeError,
                "attach() needs an http.Server",
                error::codes::INVALID_OPTION,
            ));
        }
        let options = options.unwrap_or_default();
        let endpoint = endpoint_for(self, options.path, options.cwd.clone()).map_err(|m| {
            error::throw(
                &env,
                ErrorKind::RangeError,
                &m,
                error::codes::INVALID_OPTION,
            )
        })?;
        let handoff = self.handoff_function(&env, Arc::clone(&endpoint))?;
        let attach_cluso = super::helpers::attach_cluso(&env)?;
        let cwd = match &options.cwd {
            Some(cwd) => js.create_string(cwd)?,
            None => js.undefined(),
        };
        let path = js.create_string(&endpoint.policy.path)?;
        let this = this.object.raw();
        let args = [server.raw(), path, handoff.raw(), this, cwd];
        match js.call(js.undefined(), attach_cluso, &args) {
            Called::Returned(listener) => {
                let attachment = Attachment {
                    server: js.create_reference(server.raw())?,
                    listener: js.create_reference(listener)?,
                };
                shared.attachments.borrow_mut().push(attachment);
                Ok(())
            }
            Called::Threw(thrown) => Err(js.rethrow(thrown)),
        }
    }

    /// The token clients must present when `options.token` is set, else `null`.
    #[napi(getter)]
    pub fn token(&self) -> Option<String> {
        self.shared
            .policy
            .token
            .as_ref()
            .map(|t| t.as_str().to_owned())
    }
}

impl WebSocketManager {
    /// Keeps the manager's object alive until `shutdown()`.
    fn pin(&self, env: &Env, this: Raw) -> napi::Result<()> {
        let mut pinned = self.shared.pinned.borrow_mut();
        if pinned.is_none() {
            *pinned = Some(Js::new(env).create_reference(this)?);
        }
        Ok(())
    }

    /// `handoff(fd, method, url, rawHeaders, head, localAddress)`, called by the attach glue
    /// for each upgrade on our path.
    fn handoff_function<'env>(
        &self,
        env: &'env Env,
        endpoint: Arc<Endpoint>,
    ) -> napi::Result<Function<'env, (), ()>> {
        let hub = Arc::clone(&self.shared.hub);
        env.create_function_from_closure("clusoHandoff", move |ctx: FunctionCallContext| {
            let fd: i32 = ctx.get(0)?;
            let method: String = ctx.get(1)?;
            let url: String = ctx.get(2)?;
            let raw_headers: Vec<String> = ctx.get(3)?;
            let head: napi::bindgen_prelude::Buffer = ctx.get(4)?;
            let local_address: String = ctx.get(5)?;
            let remote_address: String = ctx.get(6).unwrap_or_default();
            let request = UpgradeRequest {
                method,
                url,
                headers: pairs_from_raw_headers(raw_headers),
                local_is_loopback: local_address
                    .trim_start_matches("::ffff:")
                    .parse()
                    .is_ok_and(|ip| is_loopback_addr(&ip)),
            };
            adopt(
                &hub,
                fd,
                request,
                head.to_vec(),
                remote_address,
                Arc::clone(&endpoint),
            )
        })
    }
}

#[cfg(unix)]
fn adopt(
    hub: &Arc<Hub>,
    fd: i32,
    request: UpgradeRequest,
    head: Vec<u8>,
    remote_address: String,
    endpoint: Arc<Endpoint>,
) -> napi::Result<()> {
    crate::transport::handoff::adopt(Arc::clone(hub), fd, request, head, remote_address, endpoint)
        .map_err(|e| {
            napi::Error::new(
                Status::GenericFailure,
                format!("socket handoff failed: {e}"),
            )
        })
}

#[cfg(not(unix))]
fn adopt(
    _: &Arc<Hub>,
    _: i32,
    _: UpgradeRequest,
    _: Vec<u8>,
    _: String,
    _: Arc<Endpoint>,
) -> napi::Result<()> {
    Err(napi::Error::new(
        Status::GenericFailure,
        "socket handoff is not supported on this platform",
    ))
}

/// A socket owned by the native core, as `getConnections()` shows it.
#[napi]
pub struct NativeSocket {
    hub: Weak<Hub>,
    id: String,
    key: RecordKey,
}

impl NativeSocket {
    pub fn new(hub: &Arc<Hub>, id: String, key: RecordKey) -> Self {
        Self {
            hub: Arc::downgrade(hub),
            id,
            key,
        }
    }

    /// The connection's outbox, once every broadcast queued before this call reached it.
    fn outbox(&self) -> Option<Arc<crate::outbox::Outbox>> {
        let hub = self.hub.upgrade()?;
        hub.flush_fanout();
        let registry = hub.read();
        let connection = registry.get(&self.id).filter(|c| c.key == self.key)?;
        match &connection.transport {
            Transport::Native(outbox) => Some(Arc::clone(outbox)),
            Transport::Js => None,
        }
    }
}

#[napi]
impl NativeSocket {
    /// `1` (OPEN) while the connection is registered, else `3` (CLOSED).
    #[napi(getter)]
    pub fn ready_state(&self) -> u32 {
        if self.outbox().is_some_and(|o| o.closed().is_none()) {
            1
        } else {
            3
        }
    }

    /// Queues a text message.
    #[napi]
    pub fn send(&self, data: String) {
        if let (Some(hub), Some(outbox)) = (self.hub.upgrade(), self.outbox()) {
            hub.send_native(&self.id, &outbox, data);
        }
    }

    /// Sends a ping frame.
    #[napi]
    pub fn ping(&self) {
        if let Some(outbox) = self.outbox() {
            outbox.push_control(Message::Ping(Default::default()));
        }
    }

    /// Closes with a close frame (`code`, default 1000) after what is queued.
    #[napi]
    pub fn close(&self, code: Option<u32>) {
        if let Some(outbox) = self.outbox() {
            let code = code.and_then(|c| u16::try_from(c).ok()).unwrap_or(1000);
            outbox.close(CloseReason::Server { code });
        }
    }

    /// Drops the TCP connection at once.
    #[napi]
    pub fn terminate(&self) {
        if let Some(outbox) = self.outbox() {
            outbox.close(CloseReason::Gone);
        }
    }
}
