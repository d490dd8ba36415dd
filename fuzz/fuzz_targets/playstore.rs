//! Google Play: Pub/Sub push (OIDC bearer token + body) → token verification
//! against a JWKS served on loopback → push decode → app check → translation.
//! The Play Developer API is not configured (no network): notifications that
//! need it are refused with 503, the others are translated.
//!
//! Input: `token \n body`. A token starting with `SIGN` is structure-aware:
//! the rest is the claims JSON, RS256-signed here with the key the JWKS
//! serves (so mutations reach the claim checks and the body); any other token
//! is used as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use storehook_fuzz::{NOW_MS, clock, runtime, serve_static, sign_raw, split_once};
use storehook_shared::ingest::StoreRequest;
use storehook_shared::stores::playstore::auth::{OidcConfig, PushAuthConfig};
use storehook_shared::stores::playstore::links::MemoryLinkStore;
use storehook_testkit::playstore::{RsaTestKey, payloads};
use storehook_shared::stores::playstore::{PlayStoreConfig, PlayStoreEndpoint};

struct Setup {
    endpoint: PlayStoreEndpoint,
    key: jsonwebtoken::EncodingKey,
    header: serde_json::Value,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let key = RsaTestKey::generate("fuzz-kid");
        let jwks_url = serve_static(serde_json::json!({"keys": [key.jwk()]}).to_string());
        let config = PlayStoreConfig {
            package_names: vec![payloads::PACKAGE.to_owned()],
            push_auth: PushAuthConfig {
                oidc: Some(OidcConfig {
                    audience: payloads::AUDIENCE.to_owned(),
                    service_account: payloads::PUSH_ACCOUNT.to_owned(),
                }),
                query_token: None,
            },
            jwks_url,
            ..PlayStoreConfig::default()
        };
        let endpoint = runtime().block_on(async {
            PlayStoreEndpoint::new(config, Arc::new(MemoryLinkStore::new()), clock())
                .expect("endpoint")
        });
        Setup {
            endpoint,
            key: jsonwebtoken::EncodingKey::from_rsa_pem(key.private_pem().as_bytes())
                .expect("rsa key"),
            header: serde_json::json!({"alg": "RS256", "kid": "fuzz-kid", "typ": "JWT"}),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let (token, body) = split_once(data, b'\n');
    let token = match token.strip_prefix(b"SIGN") {
        Some(claims) => sign_raw(&s.header, claims, &s.key, jsonwebtoken::Algorithm::RS256),
        None => String::from_utf8_lossy(token).into_owned(),
    };
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let req = StoreRequest {
        method: "POST".into(),
        query: None,
        headers,
        body: bytes::Bytes::copy_from_slice(body),
    };
    storehook_fuzz::check_outcome(
        runtime().block_on(s.endpoint.process(&req, NOW_MS)),
        |e| e.rejection(),
        &[],
    );
});
