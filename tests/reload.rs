//! Moving functions between local and remote while an instance serves: under
//! a steady stream of calls no call fails, a call in flight finishes where it
//! started, and an invalid configuration is refused with the running one kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::support::{config, start};
use framex::App;
use serde_json::{Value, json};

/// An instance's `m.slow`: each call adds a permit to `started` when it
/// runs, and returns once it takes one from `release`.
#[derive(Clone)]
struct Slow {
    started: Arc<tokio::sync::Semaphore>,
    release: Arc<tokio::sync::Semaphore>,
}

impl Default for Slow {
    fn default() -> Slow {
        Slow {
            started: Arc::new(tokio::sync::Semaphore::new(0)),
            release: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

impl Slow {
    /// Waits until a call of `m.slow` runs.
    async fn running(&self) {
        self.started.acquire().await.unwrap().forget();
    }
}

/// Registers `m.where` and `m.slow`, both answering `name`.
fn register(app: &mut App, name: &'static str) -> Slow {
    app.register_handler(
        "m.where",
        framex::registry::typed(move |_: Value| async move { Ok::<_, String>(json!(name)) }),
    )
    .unwrap();
    let slow = Slow::default();
    let held = slow.clone();
    app.register_handler(
        "m.slow",
        framex::registry::typed(move |_: Value| {
            let held = held.clone();
            async move {
                held.started.add_permits(1);
                held.release.acquire().await.unwrap().forget();
                Ok::<_, String>(json!(name))
            }
        }),
    )
    .unwrap();
    slow
}

async fn remote() -> (String, Slow) {
    let mut app = App::from_config(config("[server]\nport = 0\n")).unwrap();
    let slow = register(&mut app, "remote");
    (start(app, "remote").await, slow)
}

/// Serves `app` as the local instance with the test functions; returns its
/// registry, to call through, and its reloader.
async fn local(mut app: App) -> (framex::registry::Registry, framex::Reloader, Slow) {
    let slow = register(&mut app, "local");
    let registry = app.registry().clone();
    let bound = app.isolated().bind("local").await.unwrap();
    let reloader = bound.reloader();
    tokio::spawn(bound.serve_until(std::future::pending()));
    (registry, reloader, slow)
}

/// The local configuration, with `functions` listed for `remote`.
fn local_toml(remote: &str, functions: &str) -> String {
    format!(
        "load_builtin_plugins = [\"proxy\"]\n[server]\nenable_proxy = true\nport = 0\n\
         [plugins.proxy]\nproxy_urls = [\"{remote}\"]\n\
         proxy_functions = {{ \"{remote}\" = [{functions}] }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipping_a_function_under_load_fails_no_call() {
    let (remote, _) = remote().await;
    let (registry, reloader, _) =
        local(App::from_config(config(&local_toml(&remote, ""))).unwrap()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (local_runs, remote_runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (registry, stop, errors) = (registry.clone(), stop.clone(), errors.clone());
            let (local_runs, remote_runs) = (local_runs.clone(), remote_runs.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match framex::call_on(&registry, "m.where", json!({})).await {
                        Ok(ran) if ran == "local" => local_runs.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => remote_runs.fetch_add(1, Ordering::Relaxed),
                        Err(error) => {
                            errors.lock().unwrap().push(error.to_string());
                            0
                        }
                    };
                    // A local call never waits: let the other tasks run.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    for flip in 0..20 {
        let listed = if flip % 2 == 0 { "\"m.where\"" } else { "" };
        let moved = reloader
            .reload(&config(&local_toml(&remote, listed)))
            .unwrap();
        assert_eq!(moved.len(), 1, "flip {flip}: {moved:?}");
        assert_eq!(moved[0].name, "m.where");
        // Calls run on each side of every flip: wait for some to finish.
        let runs = || local_runs.load(Ordering::Relaxed) + remote_runs.load(Ordering::Relaxed);
        let before = runs();
        while runs() < before + 8 {
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} calls failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(local_runs.load(Ordering::Relaxed) > 0);
    assert!(remote_runs.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_finishes_where_it_started() {
    let (remote, remote_slow) = remote().await;
    let (registry, reloader, local_slow) =
        local(App::from_config(config(&local_toml(&remote, "\"m.slow\""))).unwrap()).await;

    let in_flight = tokio::spawn({
        let registry = registry.clone();
        async move { framex::call_on(&registry, "m.slow", json!({})).await }
    });
    // Moved while the call runs on the remote, which holds it until then.
    remote_slow.running().await;
    let moved = reloader.reload(&config(&local_toml(&remote, ""))).unwrap();
    assert_eq!(
        moved,
        vec![framex::Moved {
            name: "m.slow".into(),
            from: remote.clone(),
            to: "local".into()
        }]
    );
    remote_slow.release.add_permits(1);
    assert_eq!(in_flight.await.unwrap().unwrap(), json!("remote"));
    local_slow.release.add_permits(1);
    assert_eq!(
        framex::call_on(&registry, "m.slow", json!({}))
            .await
            .unwrap(),
        json!("local")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_and_the_running_configuration_kept() {
    let (remote, _) = remote().await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reload");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, local_toml(&remote, "\"m.where\"")).unwrap();
    let (registry, reloader, _) = local(App::load(Some(&path)).unwrap()).await;
    assert_eq!(
        framex::call_on(&registry, "m.where", json!({}))
            .await
            .unwrap(),
        json!("remote")
    );

    std::fs::write(
        &path,
        local_toml(&remote, "\"m.where\"")
            .replace("proxy_urls = [", "proxy_urls = [\"ftp://nowhere\", "),
    )
    .unwrap();
    let error = reloader.reload_from_source().unwrap_err();
    assert!(
        error.to_string().contains("ftp://nowhere"),
        "the error names the bad URL: {error}"
    );
    assert_eq!(
        framex::call_on(&registry, "m.where", json!({}))
            .await
            .unwrap(),
        json!("remote"),
        "the running configuration is kept"
    );

    std::fs::write(&path, local_toml(&remote, "")).unwrap();
    let moved = reloader.reload_from_source().unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        framex::call_on(&registry, "m.where", json!({}))
            .await
            .unwrap(),
        json!("local")
    );
}
