//! The mails of self-service: the confirmation links, the welcome mail, and the note that an
//! address already has an alias. They name aliases only and go out like every notice
//! (signed, spooled, retried).

use crate::address::{Alias, Domain, RealAddress};
use crate::notices::notice;

fn sign_off(domain: &Domain) -> String {
    format!("-- \r\nThe remailer at {domain}\r\n")
}

fn ignore_note() -> &'static str {
    "If you did not ask for this, ignore this mail: nothing happens unless the link is \
     followed and the button on its page is pressed."
}

pub fn confirm_register(
    domain: &Domain,
    to: &RealAddress,
    alias: &Alias,
    link: &str,
    hours: u64,
) -> Vec<u8> {
    let body = format!(
        "Someone, probably you, asked to register the alias {alias} for this address.\r\n\r\n\
         To activate it, open this link and press the button on the page:\r\n\r\n{link}\r\n\r\n\
         The link works once, for {hours} hours. Until then the name is held for you.\r\n\r\n\
         {}\r\n\r\n{}",
        ignore_note(),
        sign_off(domain)
    );
    notice(domain, to, &format!("Confirm your alias {alias}"), body)
}

pub fn already_member(
    domain: &Domain,
    to: &RealAddress,
    existing: &Alias,
    requested: &Alias,
    remove_url: &str,
) -> Vec<u8> {
    let body = format!(
        "Someone, probably you, asked to register the alias {requested} for this address.\r\n\r\n\
         This address already has an alias: {existing}. An address can have one alias only, \
         so nothing was changed. To use another name, first remove {existing} at\r\n\r\n\
         {remove_url}\r\n\r\nand then register the new name.\r\n\r\n\
         If you did not ask for this, ignore this mail.\r\n\r\n{}",
        sign_off(domain)
    );
    notice(
        domain,
        to,
        &format!("You already have the alias {existing}"),
        body,
    )
}

pub fn welcome(domain: &Domain, to: &RealAddress, alias: &Alias, remove_url: &str) -> Vec<u8> {
    let body = format!(
        "Your alias {alias} is active.\r\n\r\n\
         How to use it: write from this address ({real}) to another member's alias at \
         {domain}. They receive your mail from {alias}, without your real address or name, \
         and their replies come back here. Mail to {alias} reaches you here.\r\n\r\n\
         Only mail from this address counts as yours: send from it, with its own mail server, \
         so the remailer can check that it is really you.\r\n\r\n\
         What it does not protect: the operator of the service knows that {alias} is you, \
         and the people you write to may recognise what you write.\r\n\r\n\
         To remove the alias, go to\r\n\r\n{remove_url}\r\n\r\n\
         A removed alias is never given to anyone else.\r\n\r\n{}",
        sign_off(domain),
        real = to.expose(),
    );
    notice(domain, to, &format!("Your alias {alias} is active"), body)
}

pub fn confirm_remove(
    domain: &Domain,
    to: &RealAddress,
    alias: &Alias,
    link: &str,
    hours: u64,
) -> Vec<u8> {
    let body = format!(
        "Someone, probably you, asked to remove your alias {alias}.\r\n\r\n\
         To remove it, open this link and press the button on the page:\r\n\r\n{link}\r\n\r\n\
         Removing it deletes the alias and what the service holds for it; mail to {alias} \
         will be refused, and the name is never given to anyone else. The link works once, \
         for {hours} hours.\r\n\r\n{}\r\n\r\n{}",
        ignore_note(),
        sign_off(domain)
    );
    notice(domain, to, &format!("Remove your alias {alias}?"), body)
}

/// The link that sets (`fingerprint` given) or removes a member's OpenPGP key.
pub fn confirm_key(
    domain: &Domain,
    to: &RealAddress,
    alias: &Alias,
    fingerprint: Option<&str>,
    link: &str,
    hours: u64,
) -> Vec<u8> {
    let what = match fingerprint {
        Some(fp) => format!(
            "set the OpenPGP key {fp} for your alias {alias}: mail to it, and \
                             the service's notices, will be encrypted to that key"
        ),
        None => format!(
            "remove the OpenPGP key of your alias {alias}: mail to it will then \
                         arrive without encryption"
        ),
    };
    let body = format!(
        "Someone, probably you, asked to {what}.\r\n\r\n\
         To do it, open this link and press the button on the page:\r\n\r\n{link}\r\n\r\n\
         The link works once, for {hours} hours.\r\n\r\n{}\r\n\r\n{}",
        ignore_note(),
        sign_off(domain)
    );
    notice(
        domain,
        to,
        &format!("Confirm the key change for {alias}"),
        body,
    )
}
