//! The `remailer` binary: `serve` runs the service (SMTP and the web forms); `alias`, `queue`,
//! `opt-out`, `log` (the optional send log) and `dns` are the admin commands (ARCHITECTURE.md §5). Errors reach the user as
//! one `error:` line and a non-zero exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use remailer::address::{Alias, RealAddress};
use remailer::config::Config;
use remailer::dkim::DkimKeys;
use remailer::dns_records::{self, CheckStatus};
use remailer::oneway::OptOuts;
use remailer::queue_view;
use remailer::service;
use remailer::spool::Spool;

mod cli;
use cli::{check_config, import};

#[derive(Parser)]
#[command(
    name = "remailer",
    version,
    about = "A pseudonymous remailer: aliases for real addresses, mail between them.",
    long_about = "A pseudonymous remailer: aliases for real addresses, mail between them.\n\n\
                  `remailer serve` runs SMTP intake, delivery and the web forms (on web.listen: \
                  register or remove an alias, confirmed by a mailed link). The other commands \
                  administer aliases, the queue and DNS, and work while the service runs."
)]
struct Cli {
    /// Config file (TOML). Without one, safe local defaults are used.
    #[arg(long, global = true, env = "REMAILER_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run SMTP intake, delivery and the web forms (web.listen: register and remove an
    /// alias, confirmed by mail) in one process.
    Serve,
    /// Manage aliases (works while the service runs).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Inspect and retry the queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Addresses that receive no one-way mail (stored only as keyed hashes).
    #[command(subcommand)]
    OptOut(OptOutCommand),
    /// Read the send log (privacy.send_log): time, queue id, sender and recipient alias,
    /// size and outcome; aliases only.
    Log {
        /// Only entries with this alias (NAME or NAME@DOMAIN) as sender or recipient.
        #[arg(long, value_name = "NAME")]
        alias: Option<String>,
        /// Only entries from the last DURATION (a number and s, m, h or d: 30m, 2h, 7d).
        #[arg(long, value_name = "DURATION", value_parser = remailer::duration::clap_secs)]
        since: Option<u64>,
    },
    /// Print the DNS records to publish (zone-file lines); `dns check` verifies them.
    /// Reads the DKIM keys `serve` created; creates nothing unless --create-keys is given.
    Dns {
        /// Create the DKIM keys of the configured selector if they do not exist yet (key
        /// rotation: a new selector's keys, printed before `serve` signs with them).
        #[arg(long)]
        create_keys: bool,
        #[command(subcommand)]
        command: Option<DnsCommand>,
    },
    /// Check the config file, the data dir, the keys, the store and the listeners without
    /// starting anything, and print the effective settings.
    ///
    /// Exit codes: 0 everything is usable (warnings may be printed); 3 the config file
    /// cannot be read or is invalid; 4 the data dir, a key, a TLS file or the store is
    /// unusable (for example a lost master key while sealed data exists); 5 a listener
    /// address cannot be bound (in use by another program, or not an address of this
    /// machine); 2 usage error.
    CheckConfig,
    /// Write a consistent copy of the database to FILE while the service runs (SQLite
    /// `VACUUM INTO`). The copy does not hold the keys: back up DATA_DIR/keys/master.key
    /// (and DATA_DIR/dkim/) separately.
    Backup {
        /// Where to write the copy; must not exist yet. Written 0600.
        file: PathBuf,
    },
    /// Move the store to another backend.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy this config's SQLite store into the PostgreSQL database URL (its schema is made
    /// first), to grow from one node to several. Idempotent: rows already there are kept, so
    /// it can be run again; prints the rows of each table. Stop the service first, then set
    /// store.url to URL (README, Running several nodes).
    Migrate {
        /// The PostgreSQL store, postgres://USER:PASSWORD@HOST:PORT/DATABASE.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Subcommand)]
enum DnsCommand {
    /// Query the configured resolver and say, record by record, what is missing or wrong.
    Check,
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Bind NAME (local part or NAME@DOMAIN) to REAL_ADDRESS; active at once.
    Add {
        /// The alias: a local part (`ann`) or `ann@DOMAIN`.
        name: String,
        /// The member's real mailbox, where mail to the alias is delivered.
        real_address: String,
        /// The alias expires after DURATION (a number and s, m, h or d: 30d): then it is
        /// refused, and removed like `alias remove`. Default: never.
        #[arg(long, value_name = "DURATION", value_parser = remailer::duration::clap_secs)]
        expires: Option<u64>,
    },
    /// Remove an alias and what is held for it; the name is never given out again.
    Remove {
        /// The alias to remove (`ann` or `ann@DOMAIN`).
        name: String,
    },
    /// List aliases with their real addresses and state, and the expiry of those that expire.
    List,
    /// Reactivate an alias that was paused after hard bounces.
    Activate {
        /// The paused alias (`ann` or `ann@DOMAIN`).
        name: String,
    },
    /// Show one alias: state, expiry and OpenPGP key (never the real address).
    Show {
        /// The alias (`ann` or `ann@DOMAIN`).
        name: String,
    },
    /// Set the OpenPGP public key (armored or binary FILE, '-' for standard input) that mail
    /// and notices to the member are encrypted to, or remove it with --remove.
    Key {
        /// The alias (`ann` or `ann@DOMAIN`).
        name: String,
        /// The public key file (`gpg --armor --export ADDRESS > FILE`).
        #[arg(required_unless_present = "remove", conflicts_with = "remove")]
        file: Option<PathBuf>,
        /// Remove the key: mail to the member goes in clear again.
        #[arg(long)]
        remove: bool,
    },
    /// Add many aliases from a file of `NAME REAL_ADDRESS` lines ('-' for standard input).
    ///
    /// Every line is checked first, against the file and the database; if any line is bad,
    /// all bad lines are listed and nothing is added. Lines whose alias already exists with
    /// the same real address are skipped, so an import can be run again. Blank lines and
    /// lines starting with '#' are ignored.
    Import {
        /// The file to read, or '-' for standard input.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum OptOutCommand {
    /// Never send one-way mail to ADDRESS again (no confirmation mail is sent).
    Add {
        /// The address that receives no more one-way mail.
        address: String,
    },
    /// Allow one-way mail to ADDRESS again.
    Remove {
        /// The address to take off the opt-out list.
        address: String,
    },
    /// Say whether ADDRESS has opted out (exit code 1 when not).
    Check {
        /// The address to look up.
        address: String,
    },
    /// How many addresses have opted out (the list itself holds only hashes).
    Count,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// List queued deliveries: attempts, next attempt, release time, last error.
    List,
    /// Show one queued delivery: envelope (aliases only), size, times, every attempt.
    Show {
        /// The queue id (as `queue list` prints it).
        id: String,
    },
    /// Delete one queued delivery for good (also while the service runs).
    Delete {
        /// The queue id (as `queue list` prints it).
        id: String,
    },
    /// Retry every deferred delivery now (messages held by delivery.delay stay held).
    Flush,
}

fn main() -> ExitCode {
    // Everything the service writes (data dir, database, spool, keys, backups) is for its
    // own user only, whatever umask it was started with.
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::CheckConfig = cli.command {
        return runtime.block_on(check_config::run(cli.config.as_deref()));
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each said once: library errors often repeat their
/// cause in their own message (`cannot read X: No such file or directory (os error 2)`), so
/// a cause already written is not written again.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,hickory=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => {
            let config = Config::local_defaults();
            tracing::info!(
                domain = %config.domain,
                smtp = ?config.smtp.listen,
                data_dir = %config.data_dir.display(),
                "no config file given (--config or REMAILER_CONFIG): using safe local defaults, loopback only"
            );
            Ok(config)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = load_config(cli.config.as_ref())?;
    match cli.command {
        Command::Serve => Ok(service::serve_config(config).await?),
        Command::Alias(cmd) => alias(&config, cmd).await,
        Command::Queue(cmd) => queue(&config, cmd).await,
        Command::OptOut(cmd) => opt_out(&config, cmd).await,
        Command::Log { alias, since } => send_log(&config, alias, since).await,
        Command::Dns {
            create_keys,
            command,
        } => dns(&config, create_keys, command).await,
        Command::Backup { file } => backup(&config, &file).await,
        Command::Store(StoreCommand::Migrate { to }) => store_migrate(&config, &to).await,
        Command::CheckConfig => unreachable!("handled in main"),
    }
}

async fn store_migrate(config: &Config, to: &str) -> Result<()> {
    use remailer::store::{migrate, postgres_target, PostgresStore, SqliteStore};
    let from = config.store_url();
    if !from.starts_with("sqlite:") {
        bail!("store migrate copies an SQLite store: store.url of this config is not sqlite:");
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    let source = SqliteStore::open_existing(&from).await?;
    let target = PostgresStore::open(to).await?;
    let result = migrate::sqlite_to_postgres(&source, &target).await;
    source.pool().close().await;
    target.pool().close().await;
    let counts = result?;
    println!("copied into {}:", postgres_target(to));
    for c in &counts {
        println!(
            "{}\t{} rows, {} copied, {} already there",
            c.table,
            c.source,
            c.copied,
            c.source - c.copied
        );
    }
    Ok(())
}

async fn backup(config: &Config, file: &std::path::Path) -> Result<()> {
    if file.exists() {
        bail!("{} exists already; give a new file name", file.display());
    }
    let (_, members) = service::open_members_existing(config).await?;
    members.store().close().await;
    remailer::store::backup(&config.store_url(), file).await?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({size} bytes): a consistent copy of the database",
        file.display()
    );
    println!(
        "it does NOT hold the master key: back up {} separately and keep it apart from the \
         database copies (without it the copy cannot be read, and it cannot be recreated); \
         the DKIM keys are in {}",
        remailer::keys::Keys::path(&config.data_dir).display(),
        config.data_dir.join("dkim").display()
    );
    Ok(())
}

async fn alias(config: &Config, cmd: AliasCommand) -> Result<()> {
    let (_keys, members) = match cmd {
        AliasCommand::List | AliasCommand::Show { .. } => {
            service::open_members_existing(config).await?
        }
        _ => service::open_members(config).await?,
    };
    let result = alias_command(&members, cmd).await;
    members.store().close().await;
    result
}

async fn alias_command(members: &remailer::members::Members, cmd: AliasCommand) -> Result<()> {
    let domain = members.domain().clone();
    match cmd {
        AliasCommand::Add {
            name,
            real_address,
            expires,
        } => {
            let alias = Alias::parse(&name, &domain)?;
            let real = RealAddress::parse(&real_address, &domain).context("real address")?;
            let until = expires.map(|secs| remailer::store::now_unix() + secs as i64);
            members.add_until(&alias, &real, until).await?;
            match until {
                Some(at) => println!("added {alias}, expires {}", utc(at)),
                None => println!("added {alias}"),
            }
        }
        AliasCommand::Remove { name } => {
            let alias = Alias::parse(&name, &domain)?;
            members.remove(&alias.name).await?;
            println!("removed {alias}");
        }
        AliasCommand::Activate { name } => {
            let alias = Alias::parse(&name, &domain)?;
            if !members
                .set_state(&alias.name, remailer::store::AliasState::Active)
                .await?
            {
                bail!("no alias named {}", alias.name);
            }
            println!("activated {alias}");
        }
        AliasCommand::List => {
            for e in members.list().await? {
                // A fourth column only for an alias that expires: the first three stay
                // as they were for scripts that read the state as the last column.
                let expiry = match e.expires_at {
                    Some(at) if at <= remailer::store::now_unix() => {
                        format!("\texpired {}", utc(at))
                    }
                    Some(at) => format!("\texpires {}", utc(at)),
                    None => String::new(),
                };
                let key = match &e.pgp {
                    Some(k) => format!("\tkey {}", k.fingerprint()),
                    None => String::new(),
                };
                println!(
                    "{}\t{}\t{}{expiry}{key}",
                    e.member.alias,
                    e.member.real.expose(),
                    e.state.as_str()
                );
            }
        }
        AliasCommand::Show { name } => {
            let alias = Alias::parse(&name, &domain)?;
            let Some(e) = members.by_alias(&alias.name).await? else {
                bail!("no alias named {}", alias.name);
            };
            show_alias(&e);
        }
        AliasCommand::Key { name, file, remove } => {
            let alias = Alias::parse(&name, &domain)?;
            set_key(members, &alias, file.filter(|_| !remove)).await?;
        }
        AliasCommand::Import { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            import::run(members, &text).await?;
        }
    }
    Ok(())
}

/// `alias show`: everything but the real address.
fn show_alias(e: &remailer::members::MemberEntry) {
    println!("alias\t{}", e.member.alias);
    println!("state\t{}", e.state.as_str());
    if let Some(at) = e.expires_at {
        println!("expires\t{}", utc(at));
    }
    match &e.pgp {
        Some(k) => {
            println!("key\t{}", k.fingerprint());
            let now = remailer::store::now_unix().max(0) as u64;
            match k.expires_at() {
                Some(at) if !k.usable_at(now) => println!("key expired\t{}", utc(at as i64)),
                Some(at) => println!("key expires\t{}", utc(at as i64)),
                None => {}
            }
        }
        None => println!("key\tnone (mail goes in clear)"),
    }
}

/// `alias key NAME FILE` (validated now) or `alias key NAME --remove` (file None).
async fn set_key(
    members: &remailer::members::Members,
    alias: &Alias,
    file: Option<PathBuf>,
) -> Result<()> {
    let key = match &file {
        Some(file) => {
            let bytes = if file.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                buf
            } else {
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
            };
            let now = remailer::store::now_unix().max(0) as u64;
            let key = remailer::encrypt::PublicKey::parse(&bytes, now)
                .with_context(|| format!("the key in {} is refused", file.display()))?;
            Some(key)
        }
        None => None,
    };
    if !members.set_key(&alias.name, key.as_ref()).await? {
        bail!("no alias named {}", alias.name);
    }
    match key {
        Some(k) => println!("{alias}: mail is encrypted to key {}", k.fingerprint()),
        None => println!("{alias}: key removed, mail goes in clear"),
    }
    Ok(())
}

/// Unix seconds as `2026-12-01T13:00:00Z`.
fn utc(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Most send-log entries `remailer log` prints at once.
const LOG_LIMIT: i64 = 100_000;

async fn send_log(config: &Config, alias: Option<String>, since: Option<u64>) -> Result<()> {
    if !config.privacy.send_log {
        eprintln!("note: privacy.send_log is off: no messages are recorded (entries made while it was on stay until privacy.send_log_days has passed)");
    }
    let (_keys, members) = service::open_members_existing(config).await?;
    let domain = &config.domain;
    let name = match &alias {
        Some(a) => Some(Alias::parse(a, domain)?.name.to_string()),
        None => None,
    };
    let from = since.map_or(0, |s| remailer::store::now_unix() - s as i64);
    let entries = members
        .store()
        .send_log(name.as_deref(), from, LOG_LIMIT)
        .await?;
    println!(
        "{:<20} {:<26} {:<30} {:<30} {:>9} OUTCOME",
        "TIME", "QUEUE-ID", "SENDER", "RECIPIENT", "SIZE"
    );
    for e in &entries {
        println!(
            "{:<20} {:<26} {:<30} {:<30} {:>9} {}",
            utc(e.at),
            e.queue_id,
            format!("{}@{domain}", e.sender_alias),
            format!("{}@{domain}", e.recipient_alias),
            e.size,
            e.outcome.as_str()
        );
    }
    println!("{} entries", entries.len());
    members.store().close().await;
    Ok(())
}

async fn opt_out(config: &Config, cmd: OptOutCommand) -> Result<()> {
    let (keys, members) = match cmd {
        OptOutCommand::Check { .. } | OptOutCommand::Count => {
            service::open_members_existing(config).await?
        }
        _ => service::open_members(config).await?,
    };
    let store = members.store().clone();
    let result = opt_out_command(OptOuts::new(store.clone(), keys), cmd).await;
    store.close().await;
    result
}

async fn opt_out_command(list: OptOuts, cmd: OptOutCommand) -> Result<()> {
    let parse = |a: &str| RealAddress::parse_any(a).context("address");
    match cmd {
        OptOutCommand::Add { address } => {
            let new = list.add(&parse(&address)?).await?;
            println!(
                "{}",
                if new {
                    "opted out"
                } else {
                    "already opted out"
                }
            );
        }
        OptOutCommand::Remove { address } => {
            if !list.remove(&parse(&address)?).await? {
                bail!("that address has not opted out");
            }
            println!("removed the opt-out");
        }
        OptOutCommand::Check { address } => {
            if !list.contains(&parse(&address)?).await? {
                bail!("not opted out");
            }
            println!("opted out");
        }
        OptOutCommand::Count => println!("{} opted out", list.count().await?),
    }
    Ok(())
}

async fn dns(config: &Config, create_keys: bool, command: Option<DnsCommand>) -> Result<()> {
    let keys = if create_keys {
        remailer::data_dir::create_private_dir(&config.data_dir)?;
        service::dkim_keys(config).await?
    } else {
        DkimKeys::load(&config.data_dir, &config.domain, &config.dkim.selector)?.with_context(
            || {
                format!(
                    "there are no DKIM keys for selector '{}' in {} yet: `remailer serve` \
                     creates them when it starts, or run `remailer dns --create-keys`",
                    config.dkim.selector,
                    config.data_dir.join("dkim").display()
                )
            },
        )?
    };
    match command {
        None => print!(
            "{}",
            dns_records::format_dns(config, &dns_records::records(config, &keys))
        ),
        Some(DnsCommand::Check) => {
            let resolver = remailer::sender_auth::build_resolver(&config.dns)?;
            let lines = dns_records::check(config, &keys, &resolver).await;
            let bad = lines.iter().filter(|l| l.status != CheckStatus::Ok).count();
            for line in &lines {
                println!("{line}");
            }
            if bad > 0 {
                bail!("{bad} of {} records are missing or wrong", lines.len());
            }
            println!("all {} records are published correctly", lines.len());
        }
    }
    Ok(())
}

async fn queue(config: &Config, cmd: QueueCommand) -> Result<()> {
    match cmd {
        QueueCommand::List => {
            let (keys, members) = service::open_members_existing(config).await?;
            members.store().close().await;
            let spool = remailer::data_dir::spool_dir(config);
            if !spool.is_dir() {
                println!(
                    "0 queued (there is no spool at {} yet: `remailer serve` has not run with this data dir)",
                    spool.display()
                );
                return Ok(());
            }
            let entries = Spool::inspect(&spool, &keys)?;
            let now = remailer::store::now_unix();
            println!("{}", queue_view::list_header());
            for e in &entries {
                println!("{}", queue_view::list_line(e, now));
            }
            println!("{} queued", entries.len());
        }
        QueueCommand::Show { id } => {
            check_queue_id(&id)?;
            let (keys, members) = service::open_members(config).await?;
            let entries = Spool::inspect(&config.data_dir.join("spool"), &keys)?;
            let Some(e) = entries.into_iter().find(|e| e.id == id) else {
                bail!("no queued message with id {id} (delivered, deleted or never queued)");
            };
            let sender = match e.envelope.sender_id {
                Some(sid) => members.by_id(sid).await?.map(|m| m.member.alias.address()),
                None => None,
            };
            let now = remailer::store::now_unix();
            print!("{}", queue_view::show(&e, sender.as_deref(), now));
        }
        QueueCommand::Delete { id } => {
            check_queue_id(&id)?;
            let path = service::control_socket(config);
            match tokio::net::UnixStream::connect(&path).await {
                Ok(stream) => {
                    let answer = control(stream, &format!("delete {id}")).await?;
                    if !answer.starts_with("ok") {
                        bail!("{}", answer.trim_start_matches("error: "));
                    }
                    println!("{answer}");
                }
                Err(_) => {
                    let (keys, _) = service::open_members(config).await?;
                    let dir = config.data_dir.join("spool");
                    if !Spool::delete_offline(&dir, &keys, &id)? {
                        bail!(
                            "no queued message with id {id} (delivered, deleted or never queued)"
                        );
                    }
                    println!("ok: deleted {id}");
                }
            }
        }
        QueueCommand::Flush => {
            let path = service::control_socket(config);
            let stream = tokio::net::UnixStream::connect(&path).await.with_context(|| {
                format!("the service is not running (no control socket at {}); the queue is retried when it starts", path.display())
            })?;
            let answer = control(stream, "flush").await?;
            if answer.starts_with("ok") {
                println!("{answer}");
            } else {
                bail!("the service answered: {answer}");
            }
        }
    }
    Ok(())
}

fn check_queue_id(id: &str) -> Result<()> {
    if !queue_view::valid_id(id) {
        bail!("{id:?} is not a queue id (hex digits, as `remailer queue list` prints them)");
    }
    Ok(())
}

/// Sends one command over the control socket and returns the service's one-line answer.
async fn control(mut stream: tokio::net::UnixStream, command: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer.trim().to_string())
}
