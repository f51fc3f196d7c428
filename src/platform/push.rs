//! WeChat's authorization-event pushes to a platform (WECHAT.md): the outer XML
//! (`<AppId>`, `<Encrypt>`), and the decrypted message (`InfoType` and its fields).
//! Also builds both, for the simulator. Parsing only; nothing here stores or calls.

/// The outer document WeChat POSTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `<AppId>` (or `<ToUserName>`), when present: the component appid.
    pub appid: Option<String>,
    /// `<Encrypt>`: base64 of the encrypted message.
    pub encrypt: String,
}

/// A decrypted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `component_verify_ticket`: the ticket (a secret) and WeChat's `CreateTime`.
    Ticket { ticket: String, create_time: i64 },
    /// `authorized` or `updateauthorized`: an account (re)authorized the platform; the
    /// authorization code turns into a refresh token with `api_query_auth`.
    Authorized {
        authorizer: String,
        code: Option<String>,
        create_time: i64,
    },
    /// `unauthorized`: the account revoked the authorization.
    Unauthorized {
        authorizer: String,
        create_time: i64,
    },
    /// Any other `InfoType` (answered `success`, otherwise ignored).
    Other { info_type: String },
}

impl Event {
    /// The `InfoType` as WeChat spells it (for logs).
    pub fn info_type(&self) -> &str {
        match self {
            Event::Ticket { .. } => "component_verify_ticket",
            Event::Authorized { .. } => "authorized",
            Event::Unauthorized { .. } => "unauthorized",
            Event::Other { info_type } => info_type,
        }
    }
}

/// The text of the root element's child `tag`, trimmed (CDATA included).
fn child_text(doc: &roxmltree::Document, tag: &str) -> Option<String> {
    doc.root_element()
        .children()
        .find(|n| n.has_tag_name(tag))
        .map(|n| {
            n.children()
                .filter_map(|c| c.text())
                .collect::<String>()
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty())
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, String> {
    // roxmltree refuses DTDs by default, so no entity expansion is possible.
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("not XML ({e})"))?;
    if !doc.root_element().has_tag_name("xml") {
        return Err("the root element is not <xml>".into());
    }
    Ok(doc)
}

/// Reads the outer document: `<xml><AppId>..</AppId><Encrypt>..</Encrypt></xml>`.
pub fn parse_envelope(body: &str) -> Result<Envelope, String> {
    let doc = parse(body)?;
    let encrypt = child_text(&doc, "Encrypt").ok_or("no <Encrypt> element")?;
    let appid = child_text(&doc, "AppId").or_else(|| child_text(&doc, "ToUserName"));
    Ok(Envelope { appid, encrypt })
}

/// Reads a decrypted message.
pub fn parse_event(xml: &str) -> Result<Event, String> {
    let doc = parse(xml)?;
    let info_type = child_text(&doc, "InfoType").ok_or("no <InfoType> in the message")?;
    let create_time = || -> Result<i64, String> {
        child_text(&doc, "CreateTime")
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| "no numeric <CreateTime> in the message".to_string())
    };
    let authorizer =
        || child_text(&doc, "AuthorizerAppid").ok_or_else(|| "no <AuthorizerAppid>".to_string());
    Ok(match info_type.as_str() {
        "component_verify_ticket" => Event::Ticket {
            ticket: child_text(&doc, "ComponentVerifyTicket")
                .ok_or("no <ComponentVerifyTicket> in the message")?,
            create_time: create_time()?,
        },
        "authorized" | "updateauthorized" => Event::Authorized {
            authorizer: authorizer()?,
            code: child_text(&doc, "AuthorizationCode"),
            create_time: create_time()?,
        },
        "unauthorized" => Event::Unauthorized {
            authorizer: authorizer()?,
            create_time: create_time()?,
        },
        _ => Event::Other { info_type },
    })
}

/// Why a push was refused. `Signature` is 403 (not from WeChat); the others 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("missing or wrong msg_signature")]
    Signature,
    #[error("the body is not WeChat's push: {0}")]
    Malformed(String),
    #[error("the signed message could not be read: {0}")]
    Undecryptable(String),
}

/// Checks, decrypts and reads one push: the query's `timestamp`, `nonce` and
/// `msg_signature`, and the body as WeChat sent it.
pub fn open(
    crypt: &super::crypto::MsgCrypt,
    timestamp: &str,
    nonce: &str,
    msg_signature: &str,
    body: &[u8],
) -> Result<Event, PushError> {
    let text = std::str::from_utf8(body).map_err(|_| PushError::Malformed("not UTF-8".into()))?;
    let envelope = parse_envelope(text).map_err(PushError::Malformed)?;
    if msg_signature.is_empty() {
        return Err(PushError::Signature);
    }
    crypt
        .verify(msg_signature, timestamp, nonce, &envelope.encrypt)
        .map_err(|_| PushError::Signature)?;
    let xml = crypt
        .decrypt(&envelope.encrypt)
        .map_err(|e| PushError::Undecryptable(e.to_string()))?;
    parse_event(&xml).map_err(PushError::Undecryptable)
}

/// The outer document for `encrypt` (what WeChat POSTs).
pub fn envelope(component_appid: &str, encrypt: &str) -> String {
    format!("<xml><AppId><![CDATA[{component_appid}]]></AppId><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
}

/// A `component_verify_ticket` message.
pub fn ticket_xml(component_appid: &str, ticket: &str, create_time: i64) -> String {
    format!(
        "<xml><AppId><![CDATA[{component_appid}]]></AppId><CreateTime>{create_time}</CreateTime>\
         <InfoType><![CDATA[component_verify_ticket]]></InfoType>\
         <ComponentVerifyTicket><![CDATA[{ticket}]]></ComponentVerifyTicket></xml>"
    )
}

/// An `authorized` (with a code) or `unauthorized` (without) message.
pub fn authorization_xml(
    component_appid: &str,
    info_type: &str,
    authorizer: &str,
    code: Option<&str>,
    create_time: i64,
) -> String {
    let code = code
        .map(|c| format!("<AuthorizationCode><![CDATA[{c}]]></AuthorizationCode><AuthorizationCodeExpiredTime>{}</AuthorizationCodeExpiredTime>", create_time + 3600))
        .unwrap_or_default();
    format!(
        "<xml><AppId><![CDATA[{component_appid}]]></AppId><CreateTime>{create_time}</CreateTime>\
         <InfoType><![CDATA[{info_type}]]></InfoType>\
         <AuthorizerAppid><![CDATA[{authorizer}]]></AuthorizerAppid>{code}</xml>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechat_shaped_messages_parse() {
        // The shape of WeChat's documented ticket push.
        let xml = "<xml>\n<AppId>some_appid</AppId>\n<CreateTime>1413192605</CreateTime>\n\
                   <InfoType>component_verify_ticket</InfoType>\n\
                   <ComponentVerifyTicket>some_verify_ticket</ComponentVerifyTicket>\n</xml>";
        assert_eq!(
            parse_event(xml).unwrap(),
            Event::Ticket {
                ticket: "some_verify_ticket".into(),
                create_time: 1413192605
            }
        );
        let a = authorization_xml("wxc", "authorized", "wxa", Some("code1"), 5);
        assert_eq!(
            parse_event(&a).unwrap(),
            Event::Authorized {
                authorizer: "wxa".into(),
                code: Some("code1".into()),
                create_time: 5
            }
        );
        let u = authorization_xml("wxc", "unauthorized", "wxa", None, 6);
        assert_eq!(
            parse_event(&u).unwrap(),
            Event::Unauthorized {
                authorizer: "wxa".into(),
                create_time: 6
            }
        );
        let e = parse_envelope(&envelope("wxc", "QUJD")).unwrap();
        assert_eq!(
            (e.appid.as_deref(), e.encrypt.as_str()),
            (Some("wxc"), "QUJD")
        );
        assert_eq!(
            parse_event("<xml><InfoType>notify_third_fasteregister</InfoType></xml>").unwrap(),
            Event::Other {
                info_type: "notify_third_fasteregister".into()
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bad in [
            "",
            "not xml",
            "<other><Encrypt>x</Encrypt></other>",
            "<xml><AppId>x</AppId></xml>",
            "<!DOCTYPE xml [<!ENTITY a \"aaaa\">]><xml><Encrypt>&a;</Encrypt></xml>",
        ] {
            assert!(parse_envelope(bad).is_err(), "{bad}");
        }
        for bad in [
            "<xml><InfoType>component_verify_ticket</InfoType><CreateTime>1</CreateTime></xml>",
            "<xml><InfoType>component_verify_ticket</InfoType><ComponentVerifyTicket>t</ComponentVerifyTicket></xml>",
            "<xml><InfoType>unauthorized</InfoType><CreateTime>1</CreateTime></xml>",
            "<xml><CreateTime>1</CreateTime></xml>",
        ] {
            assert!(parse_event(bad).is_err(), "{bad}");
        }
    }
}
