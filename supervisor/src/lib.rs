//! The per-grain supervisor: one process per running grain. It builds the sandbox
//! (namespaces, mounts, seccomp, cgroups), runs the app inside it, speaks Cap'n Proto to the app
//! on fd 3 and to the server on a unix socket, and wraps every capability that crosses the
//! grain's boundary. With `GrainConfig::web_socket` it also binds the grain's direct web channel
//! and hands the app its listening socket as fd 4 (the server then sends sessions' HTTP
//! requests there, past the supervisor; `newSession` and every capability still go through it).
//!
//! May touch: the grain's own directory, the unpacked package image (read-only), cgroups for its
//! grain, and the kernel interfaces needed to build a sandbox.
//! Must never: open another grain's storage, reach the network, or hand the app a file
//! descriptor or capability the platform did not grant it.
//!
//! Status: the sandbox ([`sandbox::spawn`]; SPEC.md, "The grain sandbox") and the grain's
//! lifecycle ([`lifecycle::run`]; SPEC.md, "Supervisor lifecycle": lazy start on the first
//! `getMainView`, idle shutdown, wake locks, crash logging and back-off, the rotating grain log and
//! `watchLog`, the whole app dying with the supervisor) are built. The app's `GrainApi`
//! forwards `save`/`restore`/`drop` to the server's `GrainCore` unchanged: the revocation
//! membrane around capabilities is not built yet, and only calls on the `MainView` itself count
//! as activity.

mod caps;
pub mod cgroups;
pub mod grainlog;
mod keeper;
pub mod lifecycle;
pub mod limits;
pub mod mounts;
pub mod policy;
mod rpc;
pub mod sandbox;
pub mod seccomp;
mod session;
pub mod setup;
pub mod syscalls;

pub use lifecycle::{GrainConfig, LifecycleError, Stopped};
pub use limits::{disk_usage, Limits};
pub use policy::Backoff;
pub use sandbox::{spawn, HostIds, Sandbox, SandboxConfig, SandboxError};
