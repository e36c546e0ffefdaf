//! `granary-bridge`: see the library's documentation and `granary-bridge --help`.

use std::process::ExitCode;

use granary_bridge::config::{BridgeConfig, USAGE};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = match BridgeConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("granary-bridge: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match granary_bridge::serve::run(config) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("granary-bridge: {:#}", anyhow::Error::from(e));
            ExitCode::from(1)
        }
    }
}
