//! Fuzzes the JSAPI cookie path a request takes: finding the cookie in a `Cookie` header,
//! decoding it and verifying its signature. None of it may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linkedin_token_exchange::__private::{JsapiCookie, find_cookie};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let raw = find_cookie([text.as_ref()], "linkedin_oauth_key").unwrap_or(&text);
    if let Ok(cookie) = JsapiCookie::parse(raw) {
        let _ = cookie.verify(b"fuzzing-secret");
    }
});
