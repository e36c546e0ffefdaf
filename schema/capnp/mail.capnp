@0xd2b1f3a0c8e47b19;
# Mail as capabilities: what the "send mail as" driver implements, and how mail addressed to a
# grain is delivered to it.


interface MailSender {
  # Granted by a person through the powerbox: "may send mail as alice@example.com".

  send @0 (to :List(Text), message :Data) -> (messageId :Text);
  # Send one RFC 5322 message (headers, blank line, body; at most 10 MiB) to `to` (1 to 20
  # addresses) through the administrator's SMTP relay. The platform replaces any `From` and
  # `Sender` header with the granted address and adds a `Message-ID` if there is none.
  # Fails with `overloaded` beyond the grant's rate (30 messages a minute by default).
}

struct MailMessage {
  # One message delivered to a grain by the platform's SMTP listener.
  envelopeFrom @0 :Text;
  # The SMTP `MAIL FROM` address (may be empty for bounces).
  envelopeTo @1 :List(Text);
  # The recipients at this grain (`RCPT TO`).
  data @2 :Data;
  # The raw message as received, with a `Received` header prepended.
}
