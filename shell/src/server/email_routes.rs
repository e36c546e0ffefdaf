//! `POST /account/email` (set or remove one's mail address: a verification link is mailed) and
//! `GET /account/email/<secret>` (the link).

use super::http::{html, Req, Resp};
use super::routes::{error, Session};
use super::Server;
use crate::email_verify;
use crate::ui;
use granary_powerbox::drivers::mail_send::send_now;
use hyper::StatusCode;

fn account_page(server: &Server, s: &Session, notice: &str, status: StatusCode) -> anyhow::Result<Resp> {
    let list = crate::tokens::list(&server.db, &s.2.id)?;
    // The session's user may be stale after a change: read it again.
    let user = server.db.get(&crate::accounts::USERS, &s.2.id)?.unwrap_or_else(|| s.2.clone());
    let v = ui::Viewer { user: &user, csrf: &s.1.csrf };
    Ok(html(status, ui::account(&v, &list, None, &server.base.url, Some(notice))))
}

/// `POST /account/email`: `email` empty removes the address; otherwise a link is mailed to it.
pub async fn set(server: &Server, s: &Session, req: &Req) -> anyhow::Result<Resp> {
    let form = req.form();
    let wanted = form.get("email").map(|e| e.trim()).unwrap_or("");
    if wanted.is_empty() {
        email_verify::remove(&server.db, &s.2.id)?;
        server.recheck_capabilities();
        return account_page(server, s, "Your mail address was removed; grains can no longer send mail as it.", StatusCode::OK);
    }
    let Some(email) = email_verify::normalize(wanted) else {
        return account_page(server, s, "That does not look like a mail address (name@example.org).", StatusCode::BAD_REQUEST);
    };
    let settings = crate::settings::load(&server.db)?;
    let Some(relay) = settings.relay(server.powerbox.net.borrow().extra_root_certs.clone()) else {
        return account_page(server, s, "This server cannot send mail yet (an administrator sets the outgoing mail relay in Admin → Settings), so addresses cannot be verified.", StatusCode::CONFLICT);
    };
    let secret = email_verify::start(&server.db, &s.2.id, &email)?;
    let from = format!("granary@{}", crate::powerbox_host::mail_domain(server));
    let link = format!("{}/account/email/{secret}", server.base.url);
    let message = format!(
        "To: {email}\r\nSubject: Confirm your mail address\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Someone (hopefully you, {}) asked to use this address on {}.\r\n\r\nTo confirm, open this link while signed in, within a day:\r\n\r\n{link}\r\n\r\nIf it was not you, ignore this mail.\r\n",
        s.2.username, server.base.url
    );
    let to = vec![email.clone()];
    match blocking::unblock(move || send_now(&relay, &from, &to, message.as_bytes())).await {
        Ok(_) => account_page(server, s, &format!("We sent a link to {email}. Open it to confirm the address."), StatusCode::OK),
        Err(e) => account_page(server, s, &format!("The confirmation mail could not be sent: {e}"), StatusCode::BAD_GATEWAY),
    }
}

/// `GET /account/email/<secret>`.
pub fn confirm(server: &Server, s: &Session, secret: &str) -> anyhow::Result<Resp> {
    match email_verify::confirm(&server.db, &s.2.id, secret) {
        Ok(email) => {
            server.recheck_capabilities();
            account_page(server, s, &format!("{email} is now your verified mail address."), StatusCode::OK)
        }
        Err(e) => Ok(error(StatusCode::BAD_REQUEST, "Address not confirmed", &e.to_string())),
    }
}
