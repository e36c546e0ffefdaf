//! The `granary-bridge` binary as the supervisor runs it: fd 3 is a socketpair whose other
//! end is this test, the app is a real child process (Python's http.server).

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Async;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::AsyncReadExt;
use granary_schema::grain_capnp::main_view;

use common::{call, new_session, new_session_with_key, Body, ALICE};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the bridge with `args` and free `--api-port` and `--capnp-api-port`, our end of a socketpair as its fd 3
/// (unless `fd3` is false).
fn bridge(args: &[&str], fd3: bool) -> (Child, UnixStream) {
    bridge_with_fd4(args, fd3, None)
}

/// [`bridge`], with `fd4` (a listening socket, as the supervisor hands over) as its fd 4.
fn bridge_with_fd4(args: &[&str], fd3: bool, fd4: Option<i32>) -> (Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_granary-bridge"));
    cmd.args(["--api-port", &free_port().to_string(), "--capnp-api-port", &free_port().to_string()]).args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if fd3 {
        let fd = theirs.as_raw_fd();
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Copies above both targets first, so neither dup2 clobbers the other source.
                let high = |f: i32| libc::fcntl(f, libc::F_DUPFD_CLOEXEC, 100);
                let (a, b) = (high(fd), fd4.map(high));
                if a < 0 || b.is_some_and(|b| b < 0) || libc::dup2(a, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(b) = b {
                    if libc::dup2(b, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn().unwrap();
    drop(theirs);
    (child, ours)
}

fn finish(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the bridge did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

#[test]
fn serves_a_real_app_over_fd3_and_stops_it_when_the_supervisor_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello from the grain\n").unwrap();
    let port = free_port().to_string();
    let dir_arg = dir.path().to_str().unwrap();
    let (child, ours) = bridge(
        &["--port", &port, "--", "python3", "-m", "http.server", &port, "--bind", "127.0.0.1", "--directory", dir_arg],
        true,
    );
    let ex = Rc::new(LocalExecutor::new());
    let ex2 = ex.clone();
    async_io::block_on(ex.run(async move {
        let (r, w) = Async::new(ours).unwrap().split();
        let net = twoparty::VatNetwork::new(r, w, Side::Server, Default::default());
        let mut rpc = RpcSystem::new(Box::new(net), None);
        let main_view: main_view::Client = rpc.bootstrap(Side::Client);
        let rpc_task = ex2.spawn(rpc);
        let s = new_session(&main_view, &ALICE).await;
        let r = call(&s, "GET", "/hello.txt", &[], Body::None).await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello from the grain\n"));
        drop((s, main_view));
        drop(rpc_task);
    }));
    drop(ex); // drops the cancelled RPC task, closing our end of fd 3
    let (code, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("the app accepts connections on 127.0.0.1:{port}")), "{err}");
    assert!(err.contains("the supervisor closed fd 3; stopping the app"), "{err}");
}

#[test]
fn exits_with_the_apps_status_when_the_app_exits() {
    let port = free_port().to_string();
    let script = format!(
        "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',{port}))\ns.listen()\ntime.sleep(0.5)\nraise SystemExit(7)"
    );
    let (child, _ours) = bridge(&["--port", &port, "--", "python3", "-c", &script], true);
    let (code, err) = finish(child);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("the app exited (exit status: 7)"), "{err}");
}

#[test]
fn startup_errors_are_clear_in_the_grain_log() {
    let port = free_port().to_string();
    let (child, _ours) = bridge(&["--port", &port, "--startup-timeout", "0.3", "--", "sleep", "30"], true);
    let (code, err) = finish(child);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("the app did not accept connections on 127.0.0.1:{port} within 0.3 s")), "{err}");

    let (child, _ours) = bridge(&["--port", &port, "--", "false"], true);
    let (code, err) = finish(child);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("the app exited (exit status: 1) before accepting connections on 127.0.0.1:{port}")), "{err}");

    let (child, _ours) = bridge(&["--port", &port, "--", "/nonexistent/app"], true);
    let (code, err) = finish(child);
    assert_eq!(code, 1);
    assert!(err.contains("cannot start the app `/nonexistent/app`"), "{err}");

    let (child, _ours) = bridge(&["--port", &port, "--", "true"], false);
    let (code, err) = finish(child);
    assert_eq!(code, 1);
    assert!(err.contains("fd 3 is not open"), "{err}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_granary-bridge"));
    child.args(["--port", &port, "--", "true"]).stderr(Stdio::piped()).stdout(Stdio::null());
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        child.pre_exec(|| if libc::dup2(0, 3) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let (code, err) = finish(child.stdin(Stdio::null()).spawn().unwrap());
    assert_eq!(code, 1);
    assert!(err.contains("fd 3 is not a socket"), "{err}");

    let (child, _ours) = bridge(&["--port", &port], true);
    let (code, err) = finish(child);
    assert_eq!(code, 2);
    assert!(err.contains("the app's command is missing") && err.contains("usage:"), "{err}");
}

#[test]
fn the_app_finds_the_local_api_and_its_http_goes_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen.json");
    let (port, api_port) = (free_port(), free_port());
    let script = format!(
        r#"
import json, os, socket, time, urllib.error, urllib.request
seen = {{k: os.environ.get(k) for k in ["GRANARY_API", "HTTP_PROXY", "http_proxy", "NO_PROXY"]}}
def get(url):
    try:
        return urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read())["error"]]
seen["api"] = get(os.environ["GRANARY_API"] + "/nowhere")
seen["proxied"] = get("http://example.org/")
open({out:?}, "w").write(json.dumps(seen))
s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen(); time.sleep(0.3)
"#
    );
    let (port_arg, api_arg) = (port.to_string(), api_port.to_string());
    let (child, _ours) = bridge(&["--port", &port_arg, "--api-port", &api_arg, "--", "python3", "-c", &script], true);
    let (code, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("the local API listens on 127.0.0.1:{api_port}")), "{err}");
    let seen: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let url = format!("http://127.0.0.1:{api_port}");
    assert_eq!(seen["GRANARY_API"], url.as_str());
    assert_eq!(seen["HTTP_PROXY"], url.as_str());
    assert_eq!(seen["http_proxy"], url.as_str());
    assert_eq!(seen["api"][0], 404, "the API answers before the app listens: {seen}");
    assert_eq!(seen["proxied"][0], 407, "{seen}");
    assert!(seen["proxied"][1].as_str().unwrap().contains("no network access"), "{seen}");
}

#[test]
fn serves_the_direct_web_channel_on_fd4_and_keeps_it_from_the_app() {
    use granary_schema::grain_capnp::web_channel;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello, directly\n").unwrap();
    let web = dir.path().join("web.sock");
    let listener = std::os::unix::net::UnixListener::bind(&web).unwrap();
    let port = free_port().to_string();
    // The app records whether it inherited fd 4, then serves the directory.
    let script = format!(
        "import os,http.server,functools\n\
         try:\n os.fstat(4); s='fd 4 open'\n\
         except OSError: s='fd 4 closed'\n\
         open({dir:?}+'/fd4.txt','w').write(s)\n\
         h=functools.partial(http.server.SimpleHTTPRequestHandler,directory={dir:?})\n\
         http.server.HTTPServer(('127.0.0.1',{port}),h).serve_forever()",
        dir = dir.path().to_str().unwrap()
    );
    let (child, ours) = bridge_with_fd4(&["--port", &port, "--", "python3", "-c", &script], true, Some(listener.as_raw_fd()));
    drop(listener);
    let ex = Rc::new(LocalExecutor::new());
    let ex2 = ex.clone();
    async_io::block_on(ex.run(async move {
        let (r, w) = Async::new(ours).unwrap().split();
        let net = twoparty::VatNetwork::new(r, w, Side::Server, Default::default());
        let mut rpc = RpcSystem::new(Box::new(net), None);
        let main_view: main_view::Client = rpc.bootstrap(Side::Client);
        let rpc_task = ex2.spawn(rpc);
        let (held, key) = new_session_with_key(&main_view, &ALICE).await;
        assert_eq!(key.len(), 32, "a bridge given fd 4 hands out direct keys");
        let (r, w) = Async::new(UnixStream::connect(&web).unwrap()).unwrap().split();
        let mut direct_rpc = RpcSystem::new(Box::new(twoparty::VatNetwork::new(r, w, Side::Client, Default::default())), None);
        let channel: web_channel::Client = direct_rpc.bootstrap(Side::Server);
        let direct_task = ex2.spawn(direct_rpc);
        let mut req = channel.session_request();
        req.get().set_direct_key(&key);
        let direct = req.send().promise.await.unwrap().get().unwrap().get_session().unwrap();
        let r = call(&direct, "GET", "/hello.txt", &[], Body::None).await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello, directly\n"));
        drop((direct, channel, direct_task, held, main_view));
        drop(rpc_task);
    }));
    drop(ex);
    let (code, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("fd4.txt")).unwrap(), "fd 4 closed", "the app must not inherit the channel");
}
