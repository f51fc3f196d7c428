//! WeChat's message encryption for platform pushes (WXBizMsgCrypt, WECHAT.md): the
//! `msg_signature`, and AES-256-CBC over "16 random bytes, 4-byte big-endian length, the
//! XML, the component appid", padded with PKCS#7 to 32-byte blocks. RustCrypto does the
//! cipher, the mode and the padding; this module only lays out the bytes.

use aes::cipher::block_padding::{NoPadding, Pkcs7, RawPadding};
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

type Decryptor = cbc::Decryptor<aes::Aes256>;
type Encryptor = cbc::Encryptor<aes::Aes256>;

/// WeChat pads to 32 bytes (its samples' `PKCS7Encoder` block size), not AES's 16.
const PAD_BLOCK: usize = 32;

/// The length of an EncodingAESKey as WeChat issues it (base64 of 32 bytes, no `=`).
pub const AES_KEY_CHARS: usize = 43;

/// Why a push could not be read. Never carries the key, the token or the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptError {
    #[error("EncodingAESKey must be {AES_KEY_CHARS} base64 characters")]
    BadKey,
    #[error("msg_signature does not match")]
    Signature,
    #[error("Encrypt is not valid base64")]
    Base64,
    #[error("Encrypt does not decrypt to a well-formed message")]
    Malformed,
    #[error("the message is for component appid {got:?}, not this platform's")]
    WrongAppid { got: String },
}

/// `msg_signature`: SHA-1, in lowercase hex, of token, timestamp, nonce and Encrypt
/// sorted as strings and joined without separator.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// One platform's push crypto: its message token, AES key and component appid.
#[derive(Clone)]
pub struct MsgCrypt {
    token: String,
    key: [u8; 32],
    appid: String,
}

impl std::fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MsgCrypt({}, ***)", self.appid)
    }
}

/// Decodes an EncodingAESKey: base64 of the 43 characters plus `=`. WeChat's keys are
/// 43 random letters and digits, so the last character's two spare bits are often not
/// zero: the decoder must allow them (WeChat's own samples do).
pub fn decode_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptError> {
    if encoding_aes_key.len() != AES_KEY_CHARS {
        return Err(CryptError::BadKey);
    }
    let lenient = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let bytes = lenient
        .decode(format!("{encoding_aes_key}="))
        .map_err(|_| CryptError::BadKey)?;
    bytes.try_into().map_err(|_| CryptError::BadKey)
}

impl MsgCrypt {
    pub fn new(token: &str, encoding_aes_key: &str, appid: &str) -> Result<MsgCrypt, CryptError> {
        Ok(MsgCrypt {
            token: token.to_string(),
            key: decode_aes_key(encoding_aes_key)?,
            appid: appid.to_string(),
        })
    }

    /// Checks `msg_signature` in constant time.
    pub fn verify(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<(), CryptError> {
        let expected = signature(&self.token, timestamp, nonce, encrypt);
        let given = msg_signature.to_ascii_lowercase();
        if expected.as_bytes().ct_eq(given.as_bytes()).into() {
            Ok(())
        } else {
            Err(CryptError::Signature)
        }
    }

    /// The signature this platform's token gives (for the simulator's pushes).
    pub fn sign(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        signature(&self.token, timestamp, nonce, encrypt)
    }

    /// Decrypts `Encrypt` and checks that it names this component appid; returns the XML.
    pub fn decrypt(&self, encrypt: &str) -> Result<String, CryptError> {
        let (xml, appid) = self.decrypt_any(encrypt)?;
        if appid != self.appid {
            return Err(CryptError::WrongAppid { got: appid });
        }
        Ok(xml)
    }

    /// Decrypts `Encrypt` into the XML and the appid it names, whatever that appid is.
    fn decrypt_any(&self, encrypt: &str) -> Result<(String, String), CryptError> {
        let mut buf = STANDARD
            .decode(encrypt.trim())
            .map_err(|_| CryptError::Base64)?;
        if buf.is_empty() || buf.len() % PAD_BLOCK != 0 {
            return Err(CryptError::Malformed);
        }
        let iv = &self.key[..16];
        let plain = Decryptor::new(&self.key.into(), iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| CryptError::Malformed)?;
        let last_block = plain.len() - PAD_BLOCK;
        let kept = Pkcs7::raw_unpad(&plain[last_block..]).map_err(|_| CryptError::Malformed)?;
        let plain = &plain[..last_block + kept.len()];
        // 16 random bytes, then the XML's length, the XML, the appid.
        if plain.len() < 20 {
            return Err(CryptError::Malformed);
        }
        let len = u32::from_be_bytes([plain[16], plain[17], plain[18], plain[19]]) as usize;
        let rest = &plain[20..];
        if len > rest.len() {
            return Err(CryptError::Malformed);
        }
        let xml = std::str::from_utf8(&rest[..len]).map_err(|_| CryptError::Malformed)?;
        let appid = std::str::from_utf8(&rest[len..]).map_err(|_| CryptError::Malformed)?;
        Ok((xml.to_string(), appid.to_string()))
    }

    /// Encrypts `xml` for this appid with the given 16 random bytes; returns `Encrypt`.
    pub fn encrypt_with(&self, xml: &str, random: [u8; 16]) -> String {
        let mut plain = Vec::with_capacity(20 + xml.len() + self.appid.len() + PAD_BLOCK);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&(xml.len() as u32).to_be_bytes());
        plain.extend_from_slice(xml.as_bytes());
        plain.extend_from_slice(self.appid.as_bytes());
        // Pad the last (partial or empty) 32-byte block; a full one gains a whole block.
        let used = plain.len() % PAD_BLOCK;
        let start = plain.len() - used;
        plain.resize(start + PAD_BLOCK, 0);
        Pkcs7::raw_pad(&mut plain[start..], used);
        let len = plain.len();
        let iv = &self.key[..16];
        let cipher = Encryptor::new(&self.key.into(), iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, len)
            .expect("a whole number of blocks always encrypts");
        STANDARD.encode(cipher)
    }

    /// Encrypts `xml` with fresh random bytes.
    pub fn encrypt(&self, xml: &str) -> String {
        let mut random = [0u8; 16];
        random.iter_mut().for_each(|b| *b = fastrand::u8(..));
        self.encrypt_with(xml, random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // WeChat's own WXBizMsgCrypt sample for Official Accounts (the demo shipped with the
    // Python/Java/C# samples): key, token, appid, the pushed Encrypt and its signature.
    const OA_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const OA_ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

    #[test]
    fn wechat_sample_push_verifies_and_decrypts() {
        let c = MsgCrypt::new("spamtest", OA_KEY, "wx2c2769f8efd9abc2").unwrap();
        c.verify(
            "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
            "1409735669",
            "1320562132",
            OA_ENCRYPT,
        )
        .unwrap();
        let xml = c.decrypt(OA_ENCRYPT).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let text = |tag: &str| {
            doc.root_element()
                .children()
                .find(|n| n.has_tag_name(tag))
                .and_then(|n| n.text())
                .map(str::to_string)
        };
        assert_eq!(text("ToUserName").as_deref(), Some("gh_10f6c3c3ac5a"));
        assert_eq!(text("Content").as_deref(), Some("abcdteT"));
        // One nonce digit off: WeChat's sample signature no longer matches.
        assert_eq!(
            c.verify(
                "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
                "1409735669",
                "1320562133",
                OA_ENCRYPT
            ),
            Err(CryptError::Signature)
        );
    }

    #[test]
    fn wecom_sample_push_decrypts() {
        // WeChat Work's published sample (same algorithm, corp id in the appid's place).
        let enc = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";
        let c = MsgCrypt::new(
            "QDG6eK",
            "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            "wx5823bf96d3bd56c7",
        )
        .unwrap();
        c.verify(
            "477715d11cdb4164915debcba66cb864d751f3e6",
            "1409659813",
            "1372623149",
            enc,
        )
        .unwrap();
        let xml = c.decrypt(enc).unwrap();
        assert!(xml.starts_with("<xml>"), "{xml}");
        assert!(xml.contains("wx5823bf96d3bd56c7"));
    }

    // wechatpy's tests/test_crypto.py: a fixed random prefix makes encryption
    // deterministic, so the exact Encrypt and signature can be compared.
    const PY_TOKEN: &str = "123456";
    const PY_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const PY_APPID: &str = "wx49f0ab532d5d035a";

    #[test]
    fn wechatpy_vector_encrypts_to_the_same_bytes() {
        let reply = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
        let c = MsgCrypt::new(PY_TOKEN, PY_KEY, PY_APPID).unwrap();
        let enc = c.encrypt_with(reply, *b"1234567890123456");
        assert_eq!(enc, "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3");
        assert_eq!(
            c.sign("1411525903", "461056294", &enc),
            "407518b7649e86ef23978113f92d27afa9296533"
        );
        assert_eq!(c.decrypt(&enc).unwrap(), reply);
    }

    #[test]
    fn wechatpy_vector_decrypts() {
        let enc = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";
        let c = MsgCrypt::new(PY_TOKEN, PY_KEY, PY_APPID).unwrap();
        c.verify(
            "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
            "1411525903",
            "461056294",
            enc,
        )
        .unwrap();
        let xml = c.decrypt(enc).unwrap();
        assert!(xml.contains("<Content><![CDATA[test]]></Content>"), "{xml}");
        assert!(xml.contains("messense"));
    }

    #[test]
    fn another_appid_is_refused() {
        let ours = MsgCrypt::new(PY_TOKEN, PY_KEY, PY_APPID).unwrap();
        let theirs = MsgCrypt::new(PY_TOKEN, PY_KEY, "wx0000000000000000").unwrap();
        let enc = theirs.encrypt("<xml/>");
        assert_eq!(
            ours.decrypt(&enc),
            Err(CryptError::WrongAppid {
                got: "wx0000000000000000".into()
            })
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let c = MsgCrypt::new(PY_TOKEN, PY_KEY, PY_APPID).unwrap();
        assert_eq!(c.decrypt("not base64!"), Err(CryptError::Base64));
        assert_eq!(c.decrypt(""), Err(CryptError::Malformed));
        assert_eq!(
            c.decrypt(&STANDARD.encode([7u8; 20])),
            Err(CryptError::Malformed)
        );
        // Right length, wrong key: the padding or the layout does not hold.
        let other = MsgCrypt::new(PY_TOKEN, OA_KEY, PY_APPID).unwrap();
        let enc = other.encrypt("<xml><A>1</A></xml>");
        assert!(c.decrypt(&enc).is_err());
        for n in [0usize, 1, 31, 32, 33, 64, 1000] {
            let xml = "x".repeat(n);
            assert_eq!(c.decrypt(&c.encrypt(&xml)).unwrap(), xml);
        }
        assert_eq!(
            MsgCrypt::new("t", "short", PY_APPID).err(),
            Some(CryptError::BadKey)
        );
        assert_eq!(
            MsgCrypt::new("t", &"!".repeat(43), PY_APPID).err(),
            Some(CryptError::BadKey)
        );
    }
}
