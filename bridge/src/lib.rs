//! Runs inside the sandbox, in the untrusted zone: turns WebSession calls from the supervisor
//! into HTTP requests to the app on 127.0.0.1, and offers the app a local API and HTTP proxy for
//! the capabilities its grain holds.
//!
//! May touch: the loopback interface inside its grain and fd 3. Everything it receives from the
//! app is untrusted.
//! Must never: be trusted by the platform for authorization. It can only forward what its grain
//! already holds; any check that matters happens in the supervisor or the server.
//!
//! Status: specified by the "HTTP path" issue and not built yet.
