//! A bridge from testcontainers to a Docker engine that speaks an older API.
//!
//! testcontainers 0.28 connects through bollard 0.21 with bollard's API
//! version fixed in every request's path (`/v1.49/…`) and never negotiates;
//! an engine older than that (Debian 12's docker.io 20.10 speaks 1.41)
//! refuses every request ("client version 1.49 is too new"). Neither crate
//! has a setting for it, so `cargo xtask containers` puts this between them:
//! a Unix socket of its own that `DOCKER_HOST` names for the scenarios, which
//! passes each request to the engine's socket with the version in its path
//! lowered to the engine's, and passes the answer back as it streams (logs,
//! events) or, for an upgraded connection (attach, exec), the bytes both ways.
//! Requests already at or under the engine's version pass unchanged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use hyper::body::Incoming;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

/// The bridge, serving on a thread of its own until dropped (the socket file
/// is removed then).
pub(crate) struct Shim {
    pub(crate) socket: PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Serves on `socket`, passing requests to the engine at `engine` (a Unix
/// socket) with API versions above `api` (`major.minor`) lowered to it.
pub(crate) fn start(engine: &Path, api: (u32, u32), socket: &Path) -> Result<Shim> {
    let _ = std::fs::remove_file(socket);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    let (engine, socket_path) = (Arc::new(engine.to_owned()), socket.to_owned());
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = ready.send(Err(error.to_string()));
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match UnixListener::bind(&socket_path) {
                Ok(listener) => listener,
                Err(error) => {
                    let _ = ready.send(Err(format!("{}: {error}", socket_path.display())));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            let accept = async {
                while let Ok((downstream, _)) = listener.accept().await {
                    tokio::spawn(serve(downstream, engine.clone(), api));
                }
            };
            tokio::select! {
                () = accept => {}
                _ = stopped => {}
            }
        });
    });
    is_ready
        .recv()
        .context("the Docker API bridge did not start")?
        .map_err(anyhow::Error::msg)
        .context("the Docker API bridge cannot listen")?;
    Ok(Shim {
        socket: socket.to_owned(),
        _stop: stop,
    })
}

/// One client connection, relayed over one connection to the engine.
async fn serve(downstream: UnixStream, engine: Arc<PathBuf>, api: (u32, u32)) {
    let Ok(upstream) = UnixStream::connect(engine.as_path()).await else {
        return;
    };
    let Ok((sender, connection)) =
        hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(upstream)).await
    else {
        return;
    };
    tokio::spawn(connection.with_upgrades());
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let sender = sender.clone();
        async move {
            lower_version(&mut request, api);
            let upgrading = request.headers().contains_key(hyper::header::UPGRADE);
            let from_client = upgrading.then(|| hyper::upgrade::on(&mut request));
            let mut response = {
                let mut sender = sender.lock().await;
                sender.ready().await?;
                sender.send_request(request).await?
            };
            if let (Some(from_client), StatusCode::SWITCHING_PROTOCOLS) =
                (from_client, response.status())
            {
                let from_engine = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    if let (Ok(client), Ok(engine)) = tokio::join!(from_client, from_engine) {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(client),
                            &mut TokioIo::new(engine),
                        )
                        .await;
                    }
                });
            }
            Ok::<_, hyper::Error>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(downstream), service)
        .with_upgrades()
        .await;
}

/// `/v1.49/containers/json` becomes `/v1.41/containers/json` for an engine at
/// 1.41; other paths are left alone.
fn lower_version(request: &mut Request<Incoming>, api: (u32, u32)) {
    if let Some(lowered) = lowered(request.uri(), api) {
        *request.uri_mut() = lowered;
    }
}

fn lowered(uri: &Uri, (major, minor): (u32, u32)) -> Option<Uri> {
    let path_and_query = uri.path_and_query()?.as_str();
    let rest = path_and_query.strip_prefix("/v")?;
    let (version, tail) = rest.split_at(rest.find('/')?);
    let (asked_major, asked_minor) = version.split_once('.')?;
    let asked = (
        asked_major.parse::<u32>().ok()?,
        asked_minor.parse::<u32>().ok()?,
    );
    if asked <= (major, minor) {
        return None;
    }
    format!("/v{major}.{minor}{tail}").parse().ok()
}

/// The engine's API version as `docker version` prints it (`1.41`).
pub(crate) fn parse_api(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_version_is_lowered_and_the_rest_kept() {
        let lowered = |uri: &str| lowered(&uri.parse().unwrap(), (1, 41)).map(|u| u.to_string());
        assert_eq!(
            lowered("/v1.49/containers/abc/json?all=true").as_deref(),
            Some("/v1.41/containers/abc/json?all=true")
        );
        assert_eq!(lowered("/v1.41/info"), None);
        assert_eq!(lowered("/v1.24/info"), None);
        assert_eq!(lowered("/_ping"), None);
        assert_eq!(lowered("/version"), None);
        assert_eq!(parse_api(" 1.41\n"), Some((1, 41)));
        assert_eq!(parse_api("x"), None);
    }
}
