//! `POST /v1/report` bodies: any bytes give a list of checked reports or a 400/413-style
//! error, never a panic; accepted items always carry a checked API path and a sane count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxquotad::api::report::{parse, BodyError, MAX_ITEMS};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(items) => {
            assert!(!items.is_empty() && items.len() <= MAX_ITEMS);
            for item in &items {
                assert!(
                    wxquotad::apipath::check(&item.api).is_ok(),
                    "{:?}",
                    item.api
                );
            }
        }
        Err(BodyError::Invalid(msg)) => assert!(!msg.is_empty()),
        Err(BodyError::TooMany(n)) => assert!(n > MAX_ITEMS),
    }
});
