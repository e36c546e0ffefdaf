//! A minimal grain app for the supervisor's lifecycle tests. It serves `MainView` on fd 3 and
//! takes commands as the object id of `MainView.drop`:
//!   ping              answer (proves the app is up)
//!   print:TEXT        write TEXT and a newline to stdout
//!   spam:N            write N bytes of text lines to stdout
//!   exit:N            exit with status N (the call never returns)
//!   signal:N          kill itself with signal N
//!   fork              start a child process that sleeps until killed
//!   ignore-term       ignore SIGTERM from now on
//!   stay-awake        take a wake lock (GrainApi.stayAwake) and hold it
//!   release           drop the wake lock
//!   save:LABEL        GrainApi.save of its own MainView; prints `saved token=TOKEN`
//!   restore:TOKEN     GrainApi.restore, then calls `drop("print:…")` on the restored view
//!   drop-token:TOKEN  GrainApi.drop
//! On start it prints one line to stdout and one to stderr; if /var/crash-on-start exists it
//! exits with status 3 right away. When fd 3 closes it keeps running until killed.

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use capnp::Error;
use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use futures::AsyncReadExt;
use granary_schema::grain_capnp::{grain_api, main_view};
use granary_schema::util_capnp::handle;

struct App {
    /// The supervisor's bootstrap, set once the connection exists.
    api: Rc<RefCell<Option<grain_api::Client>>>,
    wake_lock: Rc<RefCell<Option<handle::Client>>>,
}

impl App {
    fn api(&self) -> grain_api::Client {
        self.api.borrow().clone().expect("set before serving")
    }
}

impl main_view::Server for App {
    async fn new_session(self: CapRc<Self>, _: main_view::NewSessionParams, _: main_view::NewSessionResults) -> Result<(), Error> {
        Err(Error::unimplemented("the lifecycle test app has no web sessions".into()))
    }

    async fn drop(self: CapRc<Self>, params: main_view::DropParams, _: main_view::DropResults) -> Result<(), Error> {
        let id = params.get()?.get_object_id()?;
        let cmd = std::str::from_utf8(id).map_err(|_| Error::failed("command must be UTF-8".into()))?;
        let (verb, arg) = cmd.split_once(':').unwrap_or((cmd, ""));
        let num = || arg.parse::<i32>().map_err(|_| Error::failed(format!("{verb} needs a number")));
        match verb {
            "ping" => {}
            "print" => println!("{arg}"),
            "spam" => {
                let mut out = std::io::stdout().lock();
                let line = b"spam spam spam spam spam spam spam spam spam spam spam spam spam\n";
                let mut left = num()? as usize;
                while left > 0 {
                    let n = left.min(line.len());
                    out.write_all(&line[line.len() - n..]).unwrap();
                    left -= n;
                }
                out.flush().unwrap();
            }
            "exit" => {
                eprintln!("exiting with status {arg} as asked");
                std::process::exit(num()?)
            }
            "signal" => unsafe {
                libc::kill(libc::getpid(), num()?);
            },
            "fork" => {
                if unsafe { libc::fork() } == 0 {
                    loop {
                        unsafe { libc::pause() };
                    }
                }
            }
            "ignore-term" => unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
            },
            "stay-awake" => {
                let mut req = self.api().stay_awake_request();
                req.get().set_reason("lifecycle test");
                let h = req.send().promise.await?.get()?.get_handle()?;
                *self.wake_lock.borrow_mut() = Some(h);
            }
            "release" => *self.wake_lock.borrow_mut() = None,
            "save" => {
                // Save our own MainView (any capability would do) under the label `arg`.
                let mut req = self.api().save_request();
                req.get().init_cap().set_as_capability(capnp_rpc::new_client::<main_view::Client, _>(App { api: self.api.clone(), wake_lock: self.wake_lock.clone() }).client.hook);
                req.get().set_label(arg);
                let resp = req.send().promise.await?;
                let token = std::str::from_utf8(resp.get()?.get_token()?).map_err(|_| Error::failed("token is not text".into()))?.to_string();
                println!("saved token={token}");
            }
            "restore" => {
                let mut req = self.api().restore_request();
                req.get().set_token(arg.as_bytes());
                let view: main_view::Client = req.send().promise.await?.get()?.get_cap().get_as_capability()?;
                let mut call = view.drop_request();
                call.get().set_object_id(b"print:restored capability answers");
                call.send().promise.await?;
            }
            "drop-token" => {
                let mut req = self.api().drop_request();
                req.get().set_token(arg.as_bytes());
                req.send().promise.await?;
            }
            _ => return Err(Error::failed(format!("unknown test app command {cmd:?}"))),
        }
        Ok(())
    }
}

fn main() {
    println!("testapp started");
    eprintln!("testapp stderr hello");
    if std::path::Path::new("/var/crash-on-start").exists() {
        eprintln!("crashing on start as asked");
        std::process::exit(3);
    }
    let fd3 = unsafe { UnixStream::from_raw_fd(3) };
    let (r, w) = async_io::Async::new(fd3).expect("fd 3 is a socket").split();
    let net = twoparty::VatNetwork::new(r, w, Side::Client, Default::default());
    let api = Rc::new(RefCell::new(None));
    let app: main_view::Client = capnp_rpc::new_client(App { api: api.clone(), wake_lock: Rc::new(RefCell::new(None)) });
    let mut rpc = RpcSystem::new(Box::new(net), Some(app.client));
    *api.borrow_mut() = Some(rpc.bootstrap::<grain_api::Client>(Side::Server));
    let _ = async_io::block_on(rpc);
    // Like an app that does not notice its platform went away: keep running (and write nothing:
    // the log pipe may be gone too), so the tests see that the sandbox, not the app's good
    // manners, ends it.
    loop {
        unsafe { libc::pause() };
    }
}
