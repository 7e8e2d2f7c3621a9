//! `remailer alias import`: every line is checked first (syntax, duplicates in the file,
//! conflicts with the database) and nothing is added when any line is bad; lines whose alias
//! already exists with the same real address are skipped, so an import can be rerun.

use anyhow::{bail, Result};
use remailer::address::{Alias, RealAddress};
use remailer::members::Members;
use remailer::store::{now_unix, NameStatus};

/// At most this many bad lines are listed.
const MAX_LISTED: usize = 20;

struct Line {
    number: usize,
    alias: Alias,
    real: RealAddress,
}

/// Checks every line, then adds the new ones; prints the counts.
pub async fn run(members: &Members, text: &str) -> Result<()> {
    let (lines, mut problems) = parse(members, text);
    let mut new = Vec::new();
    let mut present = 0;
    for line in lines {
        match check(members, &line).await? {
            Ok(true) => present += 1,
            Ok(false) => new.push(line),
            Err(why) => problems.push(format!("line {}: {}: {why}", line.number, line.alias)),
        }
    }
    if !problems.is_empty() {
        for p in problems.iter().take(MAX_LISTED) {
            eprintln!("{p}");
        }
        if problems.len() > MAX_LISTED {
            eprintln!("... and {} more", problems.len() - MAX_LISTED);
        }
        bail!(
            "{} bad line(s); nothing was added (fix them and run the import again)",
            problems.len()
        );
    }
    let mut added = 0;
    for line in &new {
        if let Err(e) = members.add(&line.alias, &line.real).await {
            bail!(
                "line {}: {}: {e}; {added} aliases were added before it: run the import again \
                 to add the rest (those already added are skipped)",
                line.number,
                line.alias
            );
        }
        added += 1;
    }
    println!("added {added} aliases, skipped {present} already present");
    Ok(())
}

/// The well-formed lines, and a message for each bad one (also duplicates in the file).
fn parse(members: &Members, text: &str) -> (Vec<Line>, Vec<String>) {
    let domain = members.domain();
    let (mut lines, mut problems): (Vec<Line>, Vec<String>) = (Vec::new(), Vec::new());
    for (n, raw) in text.lines().enumerate() {
        let (number, raw) = (n + 1, raw.trim());
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let Some((name, real)) = raw.split_once(char::is_whitespace) else {
            problems.push(format!("line {number}: expected NAME REAL_ADDRESS"));
            continue;
        };
        let parsed = Alias::parse(name, domain)
            .map_err(|e| e.to_string())
            .and_then(|alias| {
                RealAddress::parse(real.trim(), domain)
                    .map(|real| (alias, real))
                    .map_err(|e| format!("real address: {e}"))
            });
        let (alias, real) = match parsed {
            Ok(pair) => pair,
            Err(e) => {
                problems.push(format!("line {number}: {e}"));
                continue;
            }
        };
        if let Some(first) = lines.iter().find(|l| l.alias == alias) {
            problems.push(format!(
                "line {number}: {alias} is also on line {}",
                first.number
            ));
        } else if let Some(first) = lines.iter().find(|l| l.real == real) {
            problems.push(format!(
                "line {number}: the same real address is also on line {}",
                first.number
            ));
        } else {
            lines.push(Line {
                number,
                alias,
                real,
            });
        }
    }
    (lines, problems)
}

/// Why a line cannot be imported: it conflicts with the database.
#[derive(Debug, thiserror::Error)]
enum Conflict {
    #[error("the alias is already taken (by another address)")]
    TakenByOther,
    #[error("that real address already has the alias {0}")]
    HasAlias(Alias),
    #[error("the alias is already taken")]
    Taken,
    #[error("a registration waiting for confirmation holds it")]
    Pending,
    #[error("the name was removed and is never given out again")]
    Removed,
}

/// `Ok(Ok(true))`: the alias exists with this real address (skip); `Ok(Ok(false))`: it can
/// be added; `Ok(Err(why))`: it conflicts with the database.
async fn check(members: &Members, line: &Line) -> Result<Result<bool, Conflict>> {
    if let Some(entry) = members.by_alias(&line.alias.name).await? {
        return Ok(
            if entry.member.real.normalized() == line.real.normalized() {
                Ok(true)
            } else {
                Err(Conflict::TakenByOther)
            },
        );
    }
    if let Some(entry) = members.by_real(&line.real).await? {
        return Ok(Err(Conflict::HasAlias(entry.member.alias)));
    }
    Ok(
        match members
            .store()
            .name_status(&line.alias.name, now_unix())
            .await?
        {
            NameStatus::Free => Ok(false),
            NameStatus::Taken => Err(Conflict::Taken),
            NameStatus::Pending => Err(Conflict::Pending),
            NameStatus::Removed => Err(Conflict::Removed),
        },
    )
}
