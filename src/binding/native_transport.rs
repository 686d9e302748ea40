//! The native transport's JavaScript surface: `listen()`, `attach()` and `manager.token`,
//! methods of `WebSocketManager` that hand sockets to the core.

use std::sync::Arc;

use napi::bindgen_prelude::{Function, FunctionCallContext, Object, This, Unknown};
use napi::{Env, JsValue};
use napi_derive::napi;

use super::error::{self, ErrorKind};
use super::js::{Called, Js, Raw};
use super::manager::WebSocketManager;
use crate::handshake::request::pairs_from_raw_headers;
use crate::handshake::{is_loopback_addr, UpgradeRequest, DEFAULT_PATH};
use crate::manager::Manager;
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
        if !shared.core.is_running() {
            return Err(error::shut_down(env, "listen()"));
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
        let pending = shared.core.active_guard();
        shared.reconcile_keep_alive(env);
        let (deferred, promise) = env.create_deferred::<ListenAddress, _>()?;
        let core = Arc::clone(&shared.core);
        // One of the manager's tasks: a shutdown (or the environment's end) waits for a
        // bind in flight, so a port bound just then is released before it completes.
        shared.core.spawn(async move {
            let _pending = pending;
            let listened = listener::listen(core, &host, port, endpoint).await;
            deferred.resolve(move |env| match listened {
                Ok(address) => Ok(ListenAddress {
                    port: u32::from(address.port()),
                    host: address.ip().to_string(),
                }),
                Err(failure) => Err(error::from_core(&env, &failure)),
            });
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
        if !shared.core.is_running() {
            return Err(error::shut_down(&env, "attach()"));
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
        let core = Arc::clone(&self.shared.core);
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
                &core,
                fd,
                request,
                head.to_vec(),
                remote_address,
                Arc::clone(&endpoint),
            )
            .map_err(|failure| error::from_core(ctx.env, &failure))
        })
    }
}

#[cfg(unix)]
fn adopt(
    core: &Arc<Manager>,
    fd: i32,
    request: UpgradeRequest,
    head: Vec<u8>,
    remote_address: String,
    endpoint: Arc<Endpoint>,
) -> Result<(), crate::error::Error> {
    crate::transport::handoff::adopt(
        Arc::clone(core),
        fd,
        request,
        head,
        remote_address,
        endpoint,
    )
    .map_err(|source| crate::error::Error::Handoff { source })
}

#[cfg(not(unix))]
fn adopt(
    _: &Arc<Manager>,
    _: i32,
    _: UpgradeRequest,
    _: Vec<u8>,
    _: String,
    _: Arc<Endpoint>,
) -> Result<(), crate::error::Error> {
    Err(crate::error::Error::Handoff {
        source: std::io::Error::from(std::io::ErrorKind::Unsupported),
    })
}
