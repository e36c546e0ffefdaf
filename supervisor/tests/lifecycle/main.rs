//! The supervisor's lifecycle, end to end with a real sandbox and a real Cap'n Proto app
//! (supervisor/testapp): lazy start, idle shutdown, wake locks, crashes and back-off, the grain
//! log and `watchLog`, shutdown with SIGKILL escalation, and no app process outliving a SIGKILLed
//! supervisor. Rules: SPEC.md, "Supervisor lifecycle". Must run as root; fails otherwise.

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use granary_supervisor::lifecycle::{self, Stopped};

#[test]
fn app_starts_on_first_use_and_stops_after_the_idle_time() {
    require_root();
    let grain = Grain::new();
    let mut cfg = grain.config();
    cfg.idle = Duration::from_millis(1500);
    let sup = Running::start(cfg);
    let g = &grain;
    let idle_from = with_supervisor(&grain.socket(), |s| async move {
        // The supervisor alone starts nothing, and status/keep-alive calls start nothing.
        sleep(300).await;
        assert_eq!(status(&s).await, State::NotStarted);
        assert!(g.app_processes().is_empty(), "an app process exists before the first getMainView");
        let view = main_view(&s).await.unwrap();
        command(&view, "ping").await.unwrap();
        let State::Running(pid) = running(&s).await else { unreachable!() };
        assert!(pid > 0);
        assert_eq!(g.app_processes().len(), 1);
        // Calls on the view keep it alive past the idle time.
        for _ in 0..10 {
            sleep(300).await;
            command(&view, "ping").await.unwrap();
        }
        assert!(matches!(status(&s).await, State::Running(_)), "stopped although used every 300 ms");
        Instant::now()
    });
    assert_eq!(sup.wait(Duration::from_secs(5)), Stopped::Idle);
    let took = idle_from.elapsed();
    assert!(took >= Duration::from_millis(1400), "stopped {took:?} after the last call, before the 1.5 s idle time");
    assert!(grain.app_processes().is_empty(), "app processes left after idle shutdown");
    let log = grain.log();
    for line in ["] starting the app: [\"/testapp\"", "testapp started", "testapp stderr hello", "] app started (sandbox pid", "no use for 1.5 s and no wake lock held: stopping", "app stopped: killed by signal 15"] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    assert!(!grain.socket().exists(), "the socket is removed when the supervisor exits");
}

#[test]
fn a_wake_lock_prevents_idle_shutdown_until_released() {
    require_root();
    let grain = Grain::new();
    let mut cfg = grain.config();
    cfg.idle = Duration::from_millis(400);
    let sup = Running::start(cfg);
    with_supervisor(&grain.socket(), |s| async move {
        let core = Core::default();
        keep_alive(&s, core.clone()).await;
        let view = main_view(&s).await.unwrap();
        command(&view, "stay-awake").await.unwrap();
        assert_eq!(*core.wake_locks.borrow(), ["lifecycle test"], "the server records the wake lock");
        sleep(2000).await; // five idle periods; `status` does not count as use
        assert!(matches!(status(&s).await, State::Running(_)), "idle shutdown despite a wake lock");
        assert_eq!(core.wake_locks_released.get(), 0);
        command(&view, "release").await.unwrap();
        sleep(100).await;
        assert_eq!(core.wake_locks_released.get(), 1, "releasing the app's lock releases the server's");
    });
    assert_eq!(sup.wait(Duration::from_secs(3)), Stopped::Idle);
    let log = grain.log();
    assert!(log.contains("wake lock taken: lifecycle test") && log.contains("wake lock released"), "{log}");
}

#[test]
fn grain_api_save_restore_drop_go_to_the_servers_core() {
    require_root();
    let grain = Grain::new();
    let sup = Running::start(grain.config());
    let g = &grain;
    with_supervisor(&grain.socket(), |s| async move {
        let view = main_view(&s).await.unwrap();
        let err = command(&view, "save:before keepAlive").await.unwrap_err().to_string();
        assert!(err.contains("has not linked this grain to its server yet"), "{err}");
        let core = Core::default();
        keep_alive(&s, core.clone()).await;
        command(&view, "save:my label").await.unwrap();
        await_log(g, 2000, |l| l.contains("saved token=t1\n")).await;
        assert_eq!(core.saved.borrow().iter().map(|(t, l, _)| (t.as_str(), l.as_str())).collect::<Vec<_>>(), [("t1", "my label")]);
        // The restored capability is the app's own view, reached through server and supervisor.
        command(&view, "restore:t1").await.unwrap();
        await_log(g, 2000, |l| l.contains("restored capability answers\n")).await;
        command(&view, "drop-token:t1").await.unwrap();
        assert!(core.saved.borrow().is_empty());
        let err = command(&view, "restore:t1").await.unwrap_err().to_string();
        assert!(err.contains("revoked"), "{err}");
        s.shutdown_request().send().promise.await.ok();
    });
    assert_eq!(sup.wait(Duration::from_secs(5)), Stopped::Shutdown);
}

#[test]
fn a_crash_is_logged_reported_and_the_next_use_restarts_the_app() {
    require_root();
    let grain = Grain::new();
    let sup = Running::start(grain.config());
    let g = &grain;
    with_supervisor(&grain.socket(), |s| async move {
        let core = Core::default();
        keep_alive(&s, core.clone()).await;
        let view = main_view(&s).await.unwrap();
        command(&view, "ping").await.unwrap();
        let State::Running(first) = running(&s).await else { unreachable!() };
        assert!(command(&view, "exit:7").await.is_err(), "the app exits while answering");
        assert_eq!(await_state(&s, 3000, |st| matches!(st, State::Exited { .. })).await, State::Exited { code: 7, signal: 0 });
        let log = g.log();
        assert!(log.contains("exiting with status 7 as asked") && log.contains("] app exited with status 7"), "{log}");
        assert!(log.find("as asked").unwrap() < log.find("] app exited").unwrap(), "the app's last output comes before its exit line:\n{log}");
        let err = command(&view, "ping").await.unwrap_err().to_string();
        assert!(err.contains("exited with status 7") && err.contains("call getMainView again"), "{err}");
        assert!(g.app_processes().is_empty());

        // The next use restarts it at once (one crash: no back-off).
        let view = main_view(&s).await.unwrap();
        command(&view, "ping").await.unwrap();
        let State::Running(second) = running(&s).await else { unreachable!() };
        assert_ne!(first, second);

        // Killed by a signal: reported as such; a second crash in a row backs off.
        let _ = command(&view, "signal:9").await;
        assert_eq!(await_state(&s, 3000, |st| matches!(st, State::Exited { .. })).await, State::Exited { code: -1, signal: 9 });
        assert!(g.log().contains("] app killed by signal 9 (Killed)"), "{}", g.log());
        let err = main_view(&s).await.err().expect("back-off refuses an immediate restart");
        assert_eq!(err.kind, capnp::ErrorKind::Overloaded);
        assert!(err.to_string().contains("crashed 2 times in a row; the next restart is allowed in"), "{err}");
        sleep(250).await;
        command(&main_view(&s).await.unwrap(), "ping").await.unwrap();
        sleep(50).await;
        assert_eq!(*core.exits.borrow(), [(7, 0), (-1, 9)], "GrainCore.appExited gets every crash");
        s.shutdown_request().send().promise.await.ok();
    });
    assert_eq!(sup.wait(Duration::from_secs(5)), Stopped::Shutdown);
    assert!(grain.app_processes().is_empty());
}

#[test]
fn a_crash_loop_backs_off_exponentially() {
    require_root();
    let grain = Grain::new();
    std::fs::write(grain.data.path().join("crash-on-start"), "").unwrap();
    let sup = Running::start(grain.config()); // base 200 ms
    let g = &grain;
    with_supervisor(&grain.socket(), |s| async move {
        // Per start: how long we waited after seeing the exit, and the first refusal's "allowed
        // in N ms" (the supervisor's own schedule, free of our polling lag).
        let mut waits = Vec::new();
        for _ in 0..4 {
            let t0 = Instant::now();
            let mut first_refusal = None;
            loop {
                match main_view(&s).await {
                    Ok(_) => break,
                    Err(e) => {
                        assert_eq!(e.kind, capnp::ErrorKind::Overloaded, "{e}");
                        let msg = e.to_string();
                        let ms = msg.split("allowed in ").nth(1).and_then(|r| r.split(" ms").next()).and_then(|n| n.parse::<u64>().ok());
                        first_refusal.get_or_insert_with(|| ms.unwrap_or_else(|| panic!("no delay in {msg:?}")));
                    }
                }
                sleep(10).await;
            }
            waits.push((t0.elapsed(), first_refusal));
            assert_eq!(await_state(&s, 3000, |st| matches!(st, State::Exited { .. })).await, State::Exited { code: 3, signal: 0 });
        }
        // Crash 1 → immediate; 2 → 200 ms; 3 → 400 ms after the exit.
        assert_eq!(waits[0].1, None, "{waits:?}");
        assert_eq!(waits[1].1, None, "one crash does not back off: {waits:?}");
        for (k, expect) in [(2, 200), (3, 400)] {
            let (took, refusal) = waits[k];
            let left = refusal.unwrap_or_else(|| panic!("start {k} was not refused: {waits:?}"));
            assert!(left <= expect, "start {k}: refused for {left} ms more, expected at most {expect}: {waits:?}");
            assert!(took < Duration::from_millis(expect + 1000), "start {k} took {took:?} after a {expect} ms back-off: {waits:?}");
        }
        let log = g.log();
        for (k, secs) in [(2, "0.2"), (3, "0.4"), (4, "0.8")] {
            assert!(log.contains(&format!("crashed {k} times in a row: next start allowed in {secs} s")), "{log}");
        }
        assert!(!log.contains("crashed 1 times"), "{log}");
        assert_eq!(log.matches("crashing on start as asked").count(), 4, "{log}");
        s.shutdown_request().send().promise.await.ok();
    });
    assert_eq!(sup.wait(Duration::from_secs(5)), Stopped::Shutdown);
}

#[test]
fn watch_log_sends_the_backlog_then_live_output_until_the_handle_is_dropped() {
    require_root();
    let grain = Grain::new();
    let sup = Running::start(grain.config());
    let g = &grain;
    with_supervisor(&grain.socket(), |s| async move {
        let view = main_view(&s).await.unwrap();
        running(&s).await; // the "app started" line is written
        command(&view, "print:before the watch").await.unwrap();
        await_log(g, 2000, |l| l.contains("before the watch")).await;

        let tail = Sink::default();
        let h_tail = watch_log(&s, 10, tail.clone()).await;
        let all = Sink::default();
        let h_all = watch_log(&s, 1 << 20, all.clone()).await;
        sleep(200).await;
        assert_eq!(tail.text(), "the watch\n", "a 10-byte backlog is the log's last 10 bytes");
        assert_eq!(all.text(), g.log(), "a large backlog is the whole log");

        command(&view, "print:live line").await.unwrap();
        sleep(200).await;
        assert_eq!(tail.text(), "the watch\nlive line\n");
        assert!(all.text().ends_with("before the watch\nlive line\n"));

        drop(h_tail);
        sleep(100).await;
        command(&view, "print:after the drop").await.unwrap();
        sleep(200).await;
        assert_eq!(tail.text(), "the watch\nlive line\n", "nothing arrives after the handle is dropped");
        assert!(all.text().ends_with("after the drop\n"));

        // Big output arrives in writes of at most 64 KiB.
        command(&view, "spam:200000").await.unwrap();
        sleep(500).await;
        assert!(all.writes.borrow().iter().all(|&n| n <= 64 << 10));
        assert!(all.text().ends_with("spam\n"));
        drop(h_all);
        s.shutdown_request().send().promise.await.ok();
    });
    assert_eq!(sup.wait(Duration::from_secs(5)), Stopped::Shutdown);
}

#[test]
fn the_grain_log_rotates_within_its_bound() {
    require_root();
    let grain = Grain::new();
    let mut cfg = grain.config();
    cfg.log_max_bytes = 4096;
    let sup = Running::start(cfg);
    let g = &grain;
    with_supervisor(&grain.socket(), |s| async move {
        let view = main_view(&s).await.unwrap();
        command(&view, "spam:50000").await.unwrap();
        command(&view, "print:the end").await.unwrap();
        await_log(g, 3000, |l| l.ends_with("the end\n")).await;
        s.shutdown_request().send().promise.await.ok();
    });
    sup.wait(Duration::from_secs(5));
    let size = |n: &str| std::fs::metadata(grain.log_dir().join(n)).map_or(0, |m| m.len());
    assert_eq!(size("log.1"), 4096);
    assert!(size("log") <= 4096);
    assert_eq!(std::fs::read_dir(grain.log_dir()).unwrap().count(), 2, "only log and log.1");
}

#[test]
fn shutdown_escalates_to_sigkill_when_the_app_ignores_sigterm() {
    require_root();
    let grain = Grain::new();
    let mut cfg = grain.config();
    cfg.stop_grace = Duration::from_millis(300);
    let sup = Running::start(cfg);
    let g = &grain;
    with_supervisor(&grain.socket(), |s| async move {
        let view = main_view(&s).await.unwrap();
        command(&view, "ignore-term").await.unwrap();
        command(&view, "fork").await.unwrap();
        assert_eq!(g.app_processes().len(), 2);
        s.shutdown_request().send().promise.await.ok();
    });
    assert_eq!(sup.wait(Duration::from_secs(3)), Stopped::Shutdown);
    assert!(grain.app_processes().is_empty(), "{:?}", grain.app_processes());
    let log = grain.log();
    assert!(log.contains("app still running 0.3 s after SIGTERM: killing it") && log.contains("app stopped: killed by signal 9"), "{log}");
}

#[test]
fn a_second_supervisor_for_the_same_socket_is_refused() {
    require_root();
    let grain = Grain::new();
    let sup = Running::start(grain.config());
    let err = lifecycle::bind(grain.config()).err().expect("a second supervisor must not start");
    assert!(err.to_string().contains("another supervisor already serves this grain"), "{err}");
    with_supervisor(&grain.socket(), |s| async move {
        s.shutdown_request().send().promise.await.ok();
    });
    sup.wait(Duration::from_secs(3));
    // A stale socket file (no one listening) is replaced.
    std::os::unix::net::UnixListener::bind(grain.socket()).map(drop).unwrap();
    let sup = Running::start(grain.config());
    with_supervisor(&grain.socket(), |s| async move {
        s.shutdown_request().send().promise.await.ok();
    });
    sup.wait(Duration::from_secs(3));
}

#[test]
fn the_web_channel_socket_is_replaced_owner_only_and_removed_at_exit() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    require_root();
    let grain = Grain::new();
    let web = grain.socket().with_file_name("web.sock");
    std::os::unix::net::UnixListener::bind(&web).map(drop).unwrap(); // stale, from a killed one
    let mut cfg = grain.config();
    cfg.web_socket = Some(web.clone());
    let sup = Running::start(cfg);
    let meta = std::fs::metadata(&web).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "only the server's uid may connect");
    assert!(std::os::unix::net::UnixStream::connect(&web).is_ok(), "a fresh socket listens (the app accepts)");
    with_supervisor(&grain.socket(), |s| async move {
        s.shutdown_request().send().promise.await.ok();
    });
    sup.wait(Duration::from_secs(3));
    assert!(!web.exists(), "the web channel's socket is removed when the supervisor exits");
}

/// Environment variable naming the grain directories for [`supervisor_child_process`].
const CHILD_ENV: &str = "GRANARY_LIFECYCLE_TEST_CHILD";

#[test]
fn sigkill_of_the_supervisor_leaves_no_app_process_alive() {
    require_root();
    let grain = Grain::new();
    let mut child = supervisor_process(&grain, false);
    let init = with_supervisor(&grain.socket(), |s| async move {
        let view = main_view(&s).await.unwrap();
        command(&view, "fork").await.unwrap();
        let State::Running(init) = running(&s).await else { unreachable!() };
        init
    });
    assert_eq!(grain.app_processes().len(), 2, "the app and its child run");
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let killed = Instant::now();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(killed.elapsed()));
    assert_eq!(grain.app_processes(), Vec::<i32>::new(), "app processes alive 1 s after the supervisor was SIGKILLed");
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z"), "the sandbox's init {init} is still alive: {stat}");

    // The killed supervisor could not remove the grain's cgroup; the grain's next supervisor does.
    assert!(grain.cgroup_dir().exists(), "expected the killed supervisor's cgroup to be left behind");
    let sup = Running::start(grain.config());
    assert!(!grain.cgroup_dir().exists(), "the next supervisor removes the stale cgroup");
    with_supervisor(&grain.socket(), |s| async move {
        command(&main_view(&s).await.unwrap(), "ping").await.unwrap();
        s.shutdown_request().send().promise.await.ok();
    });
    sup.wait(Duration::from_secs(3));
    assert!(!grain.cgroup_dir().exists(), "shutdown removes the cgroup");
}

/// A supervisor for `grain` as a real process (this test binary, running only
/// [`supervisor_child_process`]), once it listens on the grain's socket.
fn supervisor_process(grain: &Grain, stop_on_signals: bool) -> std::process::Child {
    let spec = [grain.image.path(), grain.data.path(), grain.dir.path()].map(|p| p.to_str().unwrap().to_string()).join("\n") + "\n" + &grain.marker + "\n" + &grain.cgroup_name() + "\n" + if stop_on_signals { "signals" } else { "" };
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "supervisor_child_process", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, spec)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(grain.socket()).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the supervisor process never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn sigterm_and_ctrl_c_stop_the_app_with_its_grace_period_and_clean_up() {
    require_root();
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let grain = Grain::new();
        let mut child = supervisor_process(&grain, true);
        with_supervisor(&grain.socket(), |s| async move {
            let view = main_view(&s).await.unwrap();
            command(&view, "fork").await.unwrap();
            assert!(matches!(running(&s).await, State::Running(_)));
        });
        assert_eq!(grain.app_processes().len(), 2, "the app and its child run");
        assert!(grain.cgroup_dir().exists());
        unsafe { libc::kill(child.id() as i32, sig) };
        let t0 = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "the supervisor did not exit within 10 s of {name}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{name}: the supervisor should stop the app and exit 0, not die: {status:?}");
        let log = grain.log();
        // The app was asked to stop (SIGTERM, which testapp does not catch), not killed with the
        // supervisor (SIGKILL).
        assert!(log.contains(&format!("received {name}: stopping")) && log.contains("app stopped: killed by signal 15"), "{name}: {log}");
        assert_eq!(grain.app_processes(), Vec::<i32>::new(), "{name}: app processes left");
        assert!(!grain.cgroup_dir().exists(), "{name}: the grain's cgroup is removed");
        assert!(!grain.socket().exists(), "{name}: the socket is removed");
    }
}

/// The supervisor process of [`supervisor_process`]; run only by that function's tests (it
/// fails when run on its own).
#[test]
#[ignore = "helper process of sigkill_of_the_supervisor_leaves_no_app_process_alive"]
fn supervisor_child_process() {
    let spec = std::env::var(CHILD_ENV).expect("this is a helper process of sigkill_of_the_supervisor_leaves_no_app_process_alive; run that test");
    let [image, data, dir, marker, cgroup, signals]: [&str; 6] = spec.split('\n').collect::<Vec<_>>().try_into().unwrap();
    let mut sandbox = granary_supervisor::SandboxConfig::new(image, data, vec!["/testapp".into(), marker.into()]);
    sandbox.cgroup_name = Some(cgroup.into());
    let dir = std::path::Path::new(dir);
    let mut cfg = lifecycle::GrainConfig::new(sandbox, dir.join("socket"), dir.join("logs"));
    cfg.stop_on_signals = signals == "signals";
    lifecycle::run(cfg).unwrap();
}
