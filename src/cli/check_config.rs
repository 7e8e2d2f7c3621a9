//! `remailer check-config`: parses and validates the config file, checks the data dir, the
//! keys, the TLS files, the store and the listeners without changing anything, prints the
//! effective settings, and exits with a code that says which part failed (see `--help`).

use std::path::Path;
use std::process::ExitCode;

use remailer::config::Config;
use remailer::data_dir::{self, Access, DataDirError};
use remailer::dkim::DkimKeys;
use remailer::service;

/// The config file cannot be read or is invalid.
pub const EXIT_CONFIG: u8 = 3;
/// The data dir, a key, a TLS file (the STARTTLS certificate and key, `delivery.tls_ca_file`)
/// or the store is unusable.
pub const EXIT_DATA: u8 = 4;
/// A listener address cannot be bound.
pub const EXIT_LISTEN: u8 = 5;

/// Runs every check and prints a report; returns the exit code of the first failed part.
pub async fn run(path: Option<&Path>) -> ExitCode {
    let config = match path {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(e) => {
                println!("config: FAILED: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => Config::local_defaults(),
    };
    print_settings(&config);
    let mut code = 0u8;
    if let Some(warning) = service::postmaster_warning(&config) {
        println!("warning: {warning}");
    }
    if !check_data(&config).await {
        code = EXIT_DATA;
    }
    if code == 0 && !check_listeners(&config).await {
        code = EXIT_LISTEN;
    }
    if code == 0 {
        println!("ok: the configuration is usable");
    }
    ExitCode::from(code)
}

fn print_settings(config: &Config) {
    let file = config
        .file
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(none: the local defaults)".into());
    println!("config file:  {file}");
    println!("domain:       {}", config.domain);
    println!("hostname:     {}", config.hostname());
    println!("data dir:     {}", config.data_dir.display());
    println!(
        "store:        {}",
        remailer::store::display_url(&config.store_url())
    );
    let smtp: Vec<String> = config.smtp.listen.iter().map(|a| a.to_string()).collect();
    println!("smtp listen:  {}", smtp.join(", "));
    println!(
        "web listen:   {} ({})",
        config.web.listen, config.web.public_url
    );
    println!(
        "relay:        {}",
        config
            .delivery
            .relay
            .as_deref()
            .unwrap_or("(none: MX lookup)")
    );
    println!(
        "postmaster:   {}",
        config.policy.postmaster.as_deref().unwrap_or("(not set)")
    );
    println!("effective settings: {config:#?}");
}

/// The data dir, keys, TLS files and store; true when they are usable. Creates nothing.
async fn check_data(config: &Config) -> bool {
    let mut ok = true;
    match service::load_tls(config) {
        Ok(Some(_)) => println!("tls: ok"),
        Ok(None) => println!("tls: not configured (no STARTTLS)"),
        Err(e) => {
            println!("tls: FAILED: {e}");
            ok = false;
        }
    }
    if let Some(path) = &config.delivery.tls_ca_file {
        match remailer::delivery::tls::check_ca_file(path) {
            Ok(n) => println!("trust roots: ok ({n} from delivery.tls_ca_file)"),
            Err(e) => {
                println!("trust roots: FAILED: {e}");
                ok = false;
            }
        }
    }
    match data_dir::open(config, Access::Existing).await {
        Ok((_, store)) => {
            store.close().await;
            println!("data dir, master key and store: ok")
        }
        Err(DataDirError::NotSetUp(why)) => {
            println!("data dir: not set up yet: {why}");
            return ok && parent_writable(&config.data_dir);
        }
        Err(e) => {
            println!("data dir, master key and store: FAILED: {e}");
            return false;
        }
    }
    match DkimKeys::load(&config.data_dir, &config.domain, &config.dkim.selector) {
        Ok(Some(_)) => println!("dkim keys: ok (selector {})", config.dkim.selector),
        Ok(None) => println!(
            "dkim keys: none yet for selector {}; `remailer serve` creates them",
            config.dkim.selector
        ),
        Err(e) => {
            println!("dkim keys: FAILED: {e}");
            ok = false;
        }
    }
    ok
}

/// For a data dir that does not exist yet: whether its nearest existing ancestor is a
/// folder (whether `serve` can create it is up to permissions checked when it runs).
fn parent_writable(dir: &Path) -> bool {
    let mut at = Some(dir);
    while let Some(p) = at {
        if p.exists() {
            if p.is_dir() {
                return true;
            }
            println!("data dir: FAILED: {} is not a folder", p.display());
            return false;
        }
        at = p.parent();
    }
    true
}

/// Binds (and releases at once) every listener; one held by the running service counts as
/// usable.
async fn check_listeners(config: &Config) -> bool {
    let running = tokio::net::UnixStream::connect(service::control_socket(config))
        .await
        .is_ok();
    let mut ok = true;
    let listeners = config
        .smtp
        .listen
        .iter()
        .map(|a| ("smtp", *a))
        .chain([("web", config.web.listen)])
        .chain(config.admin.addr().map(|a| ("admin", a)));
    for (what, addr) in listeners {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => println!("{what} listen {addr}: ok (can bind)"),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && running => {
                println!("{what} listen {addr}: ok (held by the running service)")
            }
            Err(e) => {
                println!("{what} listen {addr}: FAILED: {e}");
                ok = false;
            }
        }
    }
    ok
}
