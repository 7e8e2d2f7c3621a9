//! `service`: wires the stages together for `remailer serve` — opens keys, store and spool,
//! starts delivery (resuming the queue), the SMTP listeners, the web server, the admin server
//! (metrics, on `admin.listen` unless empty) and the control socket, and
//! shuts down gracefully on SIGTERM/SIGINT (sessions in flight finish). SIGHUP reloads the
//! TLS certificate.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, SenderAuth};
use crate::data_dir::Access;
use crate::delivery::Delivery;
use crate::dkim::DkimKeys;
use crate::intake::Intake;
use crate::keys::Keys;
use crate::members::Members;
use crate::policy::{Policy, Stages};
use crate::remail::Remail;
use crate::sender_auth::SenderAuthenticator;
use crate::spool::Spool;
use crate::web::Web;

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

fn setup(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Setup(e.to_string())
}

/// The path of the control socket that `remailer queue flush` talks to.
pub fn control_socket(config: &Config) -> PathBuf {
    config.data_dir.join("control.sock")
}

/// Opens what the commands that write need: the data dir, keys and the members directory,
/// creating them (private) on first use; a lost master key is never replaced while sealed
/// data exists ([`crate::data_dir`]).
pub async fn open_members(config: &Config) -> Result<(Arc<Keys>, Members), ServiceError> {
    open_members_with(config, Access::Create).await
}

/// [`open_members`] for read-only commands: creates nothing, and says so when the data dir
/// has not been set up yet.
pub async fn open_members_existing(config: &Config) -> Result<(Arc<Keys>, Members), ServiceError> {
    open_members_with(config, Access::Existing).await
}

async fn open_members_with(
    config: &Config,
    access: Access,
) -> Result<(Arc<Keys>, Members), ServiceError> {
    let (keys, store) = crate::data_dir::open(config, access).await.map_err(setup)?;
    Ok((
        keys.clone(),
        Members::new(store, keys, config.domain.clone()),
    ))
}

/// The first line `serve` logs: what it runs with.
fn log_start(config: &Config) {
    let listeners = |v: &[std::net::SocketAddr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    tracing::info!(
        config = %config.file.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none: local defaults)".into()),
        domain = %config.domain,
        data_dir = %config.data_dir.display(),
        smtp = %listeners(&config.smtp.listen),
        web = %config.web.listen,
        admin = %config.admin.addr().map_or_else(|| "(off)".to_string(), |a| a.to_string()),
        relay = %config.delivery.relay.as_deref().unwrap_or("(none: MX lookup)"),
        "starting"
    );
}

/// Reserved names (RFC 2606, RFC 6761) under which a test service may run without a
/// postmaster.
fn is_reserved_domain(domain: &str) -> bool {
    const RESERVED: &[&str] = &["test", "example", "invalid", "localhost"];
    let tld = domain.rsplit('.').next().unwrap_or(domain);
    RESERVED.contains(&tld)
        || ["example.com", "example.net", "example.org"]
            .iter()
            .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
}

/// A warning when a public service (a public domain, SMTP not on loopback only) runs
/// without `policy.postmaster`: RFC 5321 §4.5.1 requires postmaster@ to accept mail.
pub fn postmaster_warning(config: &Config) -> Option<String> {
    let loopback_only = config.smtp.listen.iter().all(|a| a.ip().is_loopback());
    if config.postmaster().is_some() || loopback_only || is_reserved_domain(config.domain.as_str())
    {
        return None;
    }
    Some(format!(
        "policy.postmaster is not set: mail to postmaster@{0} and abuse@{0} is refused, \
         which RFC 5321 section 4.5.1 does not allow for a public mail domain; set \
         policy.postmaster to the operator's address",
        config.domain
    ))
}

/// Loads the DKIM keys, creating them when missing. When the selector's records are
/// already published, the old keys were lost: warn, since the new ones will not match.
pub async fn dkim_keys(config: &Config) -> Result<DkimKeys, ServiceError> {
    let (dir, domain, selector) = (&config.data_dir, &config.domain, &config.dkim.selector);
    if let Some(keys) = DkimKeys::load(dir, domain, selector).map_err(setup)? {
        return Ok(keys);
    }
    if let Some(name) = published_dkim_record(config).await {
        tracing::warn!(
            record = %name,
            dir = %dir.join("dkim").display(),
            "the DKIM key files for this selector are missing but its record is published: \
             new keys are created, and mail signed with them fails DKIM until you publish \
             their records (`remailer dns`) or restore the old key files from your backup"
        );
    }
    DkimKeys::load_or_create(dir, domain, selector).map_err(setup)
}

/// The first of the selector's DKIM records that resolves (through the configured
/// resolver, bounded in time), if any.
async fn published_dkim_record(config: &Config) -> Option<String> {
    let resolver = crate::sender_auth::build_resolver(&config.dns).ok()?;
    for suffix in ["rsa", "ed"] {
        let name = format!(
            "{}-{suffix}._domainkey.{}.",
            config.dkim.selector, config.domain
        );
        let lookup = resolver.txt_lookup(name.as_str());
        if let Ok(Ok(found)) = tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await
        {
            if !found.answers().is_empty() {
                return Some(name);
            }
        }
    }
    None
}

/// Loads the STARTTLS certificate, if one is configured. Every error names the file.
pub fn load_tls(config: &Config) -> Result<Option<TlsAcceptor>, ServiceError> {
    let (Some(cert_path), Some(key_path)) = (&config.smtp.tls_cert, &config.smtp.tls_key) else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| {
            setup(format!(
                "TLS certificate {}: {}",
                cert_path.display(),
                crate::delivery::tls::pem_error(e)
            ))
        })?;
    if certs.is_empty() {
        return Err(setup(format!(
            "TLS certificate file {} holds no certificate",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| match e {
        pem::Error::NoItemsFound => setup(format!(
            "TLS key file {} holds no private key",
            key_path.display()
        )),
        e => setup(format!(
            "TLS key {}: {}",
            key_path.display(),
            crate::delivery::tls::pem_error(e)
        )),
    })?;
    crate::install_crypto_provider();
    let server = rustls::ServerConfig::builder_with_provider(crate::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            setup(format!(
                "TLS certificate {} with key {}: {e}",
                cert_path.display(),
                key_path.display()
            ))
        })?;
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Runs the service on an SMTP listener the caller bound (an ephemeral one in tests), with
/// the web, admin and control listeners of `config`, until `shutdown` completes; then
/// sessions in flight finish and delivery stops (as mini-redis's `server::run`).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    Service::open(config)
        .await?
        .run(vec![listener], shutdown)
        .await
}

/// `remailer serve`: [`Service::open`], then the SMTP listeners of `smtp.listen` (bound only
/// once the store, spool and keys are open, and after the admin server), until SIGTERM or
/// SIGINT. SIGHUP reloads the TLS certificate.
pub async fn serve_config(config: Config) -> Result<(), ServiceError> {
    let stop = stop_signals()?;
    let service = Service::open(config).await?;
    let mut listeners = Vec::new();
    for addr in &service.config.smtp.listen {
        listeners.push(bind(*addr).await?);
    }
    service.run(listeners, stop).await
}

/// Completes at the first SIGTERM or SIGINT. Installed when called, so a signal that comes
/// while the service starts is not lost (nor ends the process by its default action).
pub fn stop_signals() -> Result<impl Future<Output = ()>, ServiceError> {
    let install = |kind| signal(kind).map_err(|e| setup(format!("cannot handle signals: {e}")));
    let (mut term, mut int) = (
        install(SignalKind::terminate())?,
        install(SignalKind::interrupt())?,
    );
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, ServiceError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// Everything `serve` runs, opened and started (the queue resumed), before any listener.
pub struct Service {
    config: Arc<Config>,
    intake: Arc<Intake>,
    web: Arc<Web>,
    keys: Arc<Keys>,
    delivery: Delivery,
    hup: Signal,
    /// Turns true to stop the servers.
    stop: watch::Sender<bool>,
    /// The admin server, started last in [`Service::open`]: it answers before SMTP does.
    admin: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Opens keys, store and spool, starts delivery (resuming the queue), builds the stages
    /// and starts the admin server (`admin.listen`). A bad certificate stops it before
    /// anything is opened.
    pub async fn open(config: Config) -> Result<Service, ServiceError> {
        let config = Arc::new(config);
        // Before anything is opened or started: a bad certificate stops `serve` at once, and
        // SIGHUP is handled from before the first listener answers (it would otherwise end
        // the process with its default action).
        log_start(&config);
        let tls = load_tls(&config)?;
        let hup = signal(SignalKind::hangup())
            .map_err(|e| setup(format!("cannot handle signals: {e}")))?;
        warn_about(&config);
        let metrics = crate::metrics::install();
        let (keys, members) = open_members(&config).await?;
        crate::logtag::init(&keys, config.log.show_domains);
        if config.log.show_domains {
            tracing::warn!("log.show_domains = true: log lines name real domains (of senders and their mail servers) instead of keyed tags; this identifies members' providers. Use it only for debugging, and turn it off again");
        }
        if config.privacy.send_log {
            tracing::info!(days = config.privacy.send_log_days, "privacy.send_log is on: each remailed message is recorded (time, queue id, sender and recipient alias, size, outcome)");
        }
        let spool_dir = crate::data_dir::spool_dir(&config);
        crate::data_dir::create_private_dir(&spool_dir).map_err(setup)?;
        let spool = Arc::new(Spool::open(&spool_dir, keys.clone()).map_err(setup)?);
        let dkim = Arc::new(dkim_keys(&config).await?);
        let delivery = Delivery::new(config.clone(), spool.clone(), members.clone(), dkim.clone())
            .map_err(setup)?;
        let resumed = delivery.resume();
        if resumed > 0 {
            tracing::info!(entries = resumed, "resumed the queue");
        }
        let auth =
            SenderAuthenticator::new(&config.dns, config.policy.sender_auth, &config.hostname())
                .map_err(setup)?;
        let web = Arc::new(Web::new(
            crate::web::Settings::of(&config),
            keys.clone(),
            members.clone(),
            delivery.clone(),
        ));
        let remail = Remail::new(
            crate::remail::Settings::of(&config),
            members.clone(),
            keys.clone(),
            spool,
            delivery.clone(),
            dkim,
            auth.clone(),
        );
        let policy = Policy::new(
            members,
            &config.web.public_url,
            auth,
            config.postmaster().is_some(),
        );
        let intake = Arc::new(Intake::new(
            crate::intake::Settings::of(&config),
            Box::new(Stages { policy, remail }),
            tls,
        ));
        let (stop, stop_rx) = watch::channel(false);
        // Bound before the SMTP and web listeners: once they answer, so does /metrics.
        let admin = spawn_admin(&config, metrics, delivery.clone(), stop_rx).await?;
        Ok(Service {
            config,
            intake,
            web,
            keys,
            delivery,
            hup,
            stop,
            admin,
        })
    }

    /// The SMTP intake, for sessions over any stream ([`crate::intake::run_session`]).
    pub fn intake(&self) -> Arc<Intake> {
        self.intake.clone()
    }

    /// Serves SMTP on `smtp`, the web forms on `web.listen`, the admin server and the control
    /// socket until `shutdown` completes; then finishes sessions in flight and stops.
    pub async fn run(
        self,
        smtp: Vec<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServiceError> {
        let Service {
            config,
            intake,
            web,
            keys,
            delivery,
            hup,
            stop: stop_tx,
            admin,
        } = self;
        let stop_rx = stop_tx.subscribe();
        let mut servers = Vec::new();
        for listener in smtp {
            tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "SMTP listening");
            servers.push(tokio::spawn(
                intake.clone().serve(listener, stop_rx.clone()),
            ));
        }
        let web_listener = bind(config.web.listen).await?;
        tracing::info!(addr = %web_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "web listening");
        let purge = web.signup.spawn_purge();
        let web_server = tokio::spawn(crate::web::server::serve(
            web_listener,
            crate::web::router(web.clone()),
            config.web.clone(),
            keys.clone(),
            stop_rx.clone(),
        ));
        let control = spawn_control(&config, delivery.clone())?;
        tokio::select! {
            _ = shutdown => {}
            _ = reload_on_hup(hup, &config, &intake) => {}
        }

        tracing::info!("shutting down: finishing sessions in flight");
        let _ = stop_tx.send(true);
        for s in servers {
            let _ = s.await;
        }
        let _ = web_server.await;
        if let Some(admin) = admin {
            admin.abort();
        }
        purge.abort();
        control.abort();
        let _ = std::fs::remove_file(control_socket(&config));
        delivery.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The warnings `serve` gives at start about what the config leaves open.
fn warn_about(config: &Config) {
    if let Some(warning) = postmaster_warning(config) {
        tracing::warn!("{warning}");
    }
    if config.policy.sender_auth == SenderAuth::None {
        tracing::warn!("policy.sender_auth = \"none\": the From address is trusted as given; anyone who forges a member's address can write as that member's alias");
    }
}

/// The admin server (`/metrics`, `/healthz`) on `admin.listen`, unless that is empty; and
/// the exporter's upkeep beside it.
async fn spawn_admin(
    config: &Config,
    metrics: &'static metrics_exporter_prometheus::PrometheusHandle,
    delivery: Delivery,
    stop: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServiceError> {
    let Some(addr) = config.admin.addr() else {
        tracing::info!("admin server off (admin.listen is empty)");
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "admin (metrics) listening");
    let app = crate::web::admin::router(metrics, delivery);
    let server = tokio::spawn(crate::web::admin::serve(listener, app, stop));
    Ok(Some(tokio::spawn(async move {
        let upkeep = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                metrics.run_upkeep();
            }
        };
        tokio::select! {
            _ = server => {}
            _ = upkeep => {}
        }
    })))
}

/// Reloads the TLS certificate at each SIGHUP (never completes).
async fn reload_on_hup(mut hup: Signal, config: &Config, intake: &Intake) {
    while hup.recv().await.is_some() {
        match load_tls(config) {
            Ok(None) => tracing::info!(
                "SIGHUP: no TLS certificate is configured (smtp.tls_cert), nothing to reload"
            ),
            Ok(tls) => {
                if let Ok(mut slot) = intake.tls.write() {
                    *slot = tls;
                }
                tracing::info!("reloaded the TLS certificate");
            }
            Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the old certificate"),
        }
    }
    std::future::pending::<()>().await
}

/// The control socket: one command per connection (`flush`, `delete ID`), answered with
/// one line.
fn spawn_control(
    config: &Config,
    delivery: Delivery,
) -> Result<tokio::task::JoinHandle<()>, ServiceError> {
    let path = control_socket(config);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(|e| setup(format!("control socket {}: {e}", path.display())))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let delivery = delivery.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let _ = BufReader::new(read).take(256).read_line(&mut line).await;
                let answer = match line.trim().split_once(' ') {
                    None if line.trim() == "flush" => {
                        delivery.flush();
                        "ok: retrying every deferred message now\n".to_string()
                    }
                    Some(("delete", id)) if crate::queue_view::valid_id(id) => {
                        if delivery.delete(id) {
                            format!("ok: deleted {id}\n")
                        } else {
                            format!("error: no queued message with id {id} (delivered, deleted or never queued)\n")
                        }
                    }
                    _ => "error: unknown command\n".to_string(),
                };
                let _ = write.write_all(answer.as_bytes()).await;
            });
        }
    }))
}
