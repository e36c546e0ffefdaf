use super::*;
use capnp::any_pointer;
use granary_schema::powerbox_capnp::powerbox_display_info;

/// Builds a tag's value.
type ValueBuilder<'a> = &'a dyn Fn(any_pointer::Builder);

/// A descriptor with the given tags, each built by its closure (`None`: null value).
fn descriptor(tags: &[(u64, Option<ValueBuilder>)]) -> OwnedDescriptor {
    let mut message = Builder::new_default();
    let root = message.init_root::<powerbox_descriptor::Builder>();
    let mut list = root.init_tags(tags.len() as u32);
    for (i, (id, value)) in tags.iter().enumerate() {
        let mut tag = list.reborrow().get(i as u32);
        tag.set_id(*id);
        if let Some(v) = value {
            v(tag.init_value());
        }
    }
    OwnedDescriptor { message }
}

fn matches(req: &OwnedDescriptor, offer: &OwnedDescriptor) -> bool {
    offer_matches(req.reader(), offer.reader()).is_some()
}

/// A `PowerboxDisplayInfo` value (three text pointers) with `None` fields left null.
fn info(title: Option<&'static str>, verb: Option<&'static str>) -> impl Fn(any_pointer::Builder) {
    move |v: any_pointer::Builder| {
        let mut s = v.init_as::<powerbox_display_info::Builder>();
        if let Some(t) = title {
            s.set_title(t);
        }
        if let Some(t) = verb {
            s.set_verb_phrase(t);
        }
    }
}

/// A nested `PowerboxDescriptor` value: a data section (quality) and a list of structs (tags),
/// each tag with a u64 id and, when given, a text value.
fn nested(quality: MatchQuality, tags: &'static [(u64, Option<&'static str>)]) -> impl Fn(any_pointer::Builder) {
    move |v: any_pointer::Builder| {
        let mut d = v.init_as::<powerbox_descriptor::Builder>();
        d.set_quality(quality);
        let mut list = d.init_tags(tags.len() as u32);
        for (i, (id, text)) in tags.iter().enumerate() {
            let mut t = list.reborrow().get(i as u32);
            t.set_id(*id);
            if let Some(text) = text {
                t.init_value().set_as::<capnp::text::Owned>(*text).unwrap();
            }
        }
    }
}

#[test]
fn ids_must_be_equal_and_every_request_tag_present() {
    let a = descriptor(&[(1, None)]);
    let b = descriptor(&[(2, None)]);
    let ab = descriptor(&[(1, None), (2, None)]);
    assert!(matches(&a, &a));
    assert!(!matches(&a, &b));
    assert!(matches(&a, &ab), "the offer may have more tags");
    assert!(!matches(&ab, &a), "every request tag must be offered");
    assert!(matches(&ab, &descriptor(&[(2, None), (3, None), (1, None)])), "order does not matter");
}

#[test]
fn null_values_on_either_side_match_anything() {
    let null = descriptor(&[(1, None)]);
    let filled = descriptor(&[(1, Some(&info(Some("t"), None)))]);
    assert!(matches(&null, &filled));
    assert!(matches(&filled, &null));
}

#[test]
fn structs_match_field_by_field_with_null_fields_matching() {
    let title_a = descriptor(&[(1, Some(&info(Some("a"), None)))]);
    let title_b = descriptor(&[(1, Some(&info(Some("b"), None)))]);
    let title_a_verb = descriptor(&[(1, Some(&info(Some("a"), Some("v"))))]);
    let only_verb = descriptor(&[(1, Some(&info(None, Some("v"))))]);
    let other_verb = descriptor(&[(1, Some(&info(None, Some("w"))))]);
    assert!(matches(&title_a, &title_a_verb), "the request's null verb matches any");
    assert!(matches(&title_a_verb, &title_a), "the offer's null verb matches any");
    assert!(!matches(&title_a, &title_b), "text mismatch");
    assert!(matches(&only_verb, &title_a_verb));
    assert!(!matches(&only_verb, &other_verb));
    // Text is compared whole, not as a prefix.
    let long = descriptor(&[(1, Some(&info(Some("ab"), None)))]);
    assert!(!matches(&title_a, &long) && !matches(&long, &title_a));
}

#[test]
fn data_sections_compare_zero_extended() {
    let preferred = descriptor(&[(1, Some(&nested(MatchQuality::Preferred, &[])))]);
    let unacceptable = descriptor(&[(1, Some(&nested(MatchQuality::Unacceptable, &[])))]);
    // Acceptable is 0: an all-zero data section, equal to a struct with no data section.
    let acceptable = descriptor(&[(1, Some(&nested(MatchQuality::Acceptable, &[])))]);
    let no_data = descriptor(&[(1, Some(&info(None, None)))]);
    assert!(!matches(&preferred, &unacceptable));
    assert!(matches(&preferred, &preferred));
    assert!(matches(&acceptable, &no_data) && matches(&no_data, &acceptable), "shorter is zero-extended");
    assert!(!matches(&preferred, &no_data), "a non-zero field against a missing one");
}

#[test]
fn nested_structs_and_lists_of_structs_compare_as_sets() {
    let offer = descriptor(&[(1, Some(&nested(MatchQuality::Acceptable, &[(10, Some("x")), (20, Some("y")), (30, None)])))]);
    let subset = descriptor(&[(1, Some(&nested(MatchQuality::Acceptable, &[(20, Some("y")), (10, None)])))]);
    let with_stranger = descriptor(&[(1, Some(&nested(MatchQuality::Acceptable, &[(10, Some("x")), (40, None)])))]);
    let wrong_nested_text = descriptor(&[(1, Some(&nested(MatchQuality::Acceptable, &[(10, Some("y"))])))]);
    let null_matches_nested = descriptor(&[(1, Some(&nested(MatchQuality::Acceptable, &[(30, Some("anything"))])))]);
    let empty = descriptor(&[(1, Some(&nested(MatchQuality::Acceptable, &[])))]);
    assert!(matches(&subset, &offer), "a subset, in another order");
    assert!(!matches(&with_stranger, &offer), "an element the offer lacks");
    assert!(!matches(&wrong_nested_text, &offer), "a nested text mismatch");
    assert!(matches(&null_matches_nested, &offer), "a nested null value in the offer");
    assert!(matches(&empty, &offer), "the empty set is a subset");
    assert!(!matches(&offer, &subset), "a superset is not a subset");
}

#[test]
fn primitive_and_pointer_lists_compare_element_wise() {
    let ints = |v: &'static [u32]| {
        move |b: any_pointer::Builder| {
            let mut l = b.initn_as::<capnp::primitive_list::Builder<u32>>(v.len() as u32);
            for (i, x) in v.iter().enumerate() {
                l.set(i as u32, *x);
            }
        }
    };
    let texts = |v: &'static [&'static str]| {
        move |b: any_pointer::Builder| {
            let mut l = b.initn_as::<capnp::text_list::Builder>(v.len() as u32);
            for (i, x) in v.iter().enumerate() {
                l.set(i as u32, *x);
            }
        }
    };
    let d = |f: &dyn Fn(any_pointer::Builder)| descriptor(&[(1, Some(f))]);
    assert!(matches(&d(&ints(&[1, 2])), &d(&ints(&[1, 2]))));
    assert!(!matches(&d(&ints(&[1, 2])), &d(&ints(&[2, 1]))), "order matters");
    assert!(!matches(&d(&ints(&[1])), &d(&ints(&[1, 2]))), "length matters");
    assert!(matches(&d(&texts(&["a", "b"])), &d(&texts(&["a", "b"]))));
    assert!(!matches(&d(&texts(&["a", "b"])), &d(&texts(&["a", "c"]))));
    assert!(!matches(&d(&ints(&[1])), &d(&texts(&["a"]))), "different element kinds");
    assert!(!matches(&d(&ints(&[1])), &d(&info(Some("a"), None))), "a list against a struct");
    let data = |v: &'static [u8]| move |mut b: any_pointer::Builder| b.set_as::<capnp::data::Owned>(v).unwrap();
    assert!(matches(&d(&data(b"\x00\x01")), &d(&data(b"\x00\x01"))));
    assert!(!matches(&d(&data(b"\x00\x01")), &d(&data(b"\x00\x02"))));
}

#[test]
fn quality_is_the_offers() {
    let req = descriptor(&[(1, None)]);
    let offer = descriptor(&[(1, None)]);
    assert_eq!(offer_matches(req.reader(), offer.reader()), Some(MatchQuality::Acceptable));
    let preferred = offer.clone().with_quality(MatchQuality::Preferred);
    assert_eq!(offer_matches(req.reader(), preferred.reader()), Some(MatchQuality::Preferred));
    let unacceptable = descriptor(&[(1, None)]).with_quality(MatchQuality::Unacceptable);
    assert_eq!(offer_matches(req.clone().with_quality(MatchQuality::Preferred).reader(), unacceptable.reader()), Some(MatchQuality::Unacceptable));
    assert!(quality_rank(MatchQuality::Preferred) > quality_rank(MatchQuality::Acceptable));
    assert!(quality_rank(MatchQuality::Acceptable) > quality_rank(MatchQuality::Unacceptable));
    // A request matches when any one of its descriptors does.
    let request = [descriptor(&[(9, None)]), descriptor(&[(1, None)])];
    assert_eq!(request_matches(&request, &preferred), Some(MatchQuality::Preferred));
    assert_eq!(request_matches(&request[..1], &preferred), None);
}

#[test]
fn http_and_mail_offers_and_requests() {
    let request = http_api_descriptor(Some("https://api.example.com"), Some("/v1/"), None);
    let driver_offer = http_api_descriptor(None, None, None);
    let notes_offer = http_api_descriptor(None, None, Some("notes"));
    assert!(matches(&request, &driver_offer), "the HTTP driver's null origin matches any origin");
    assert!(matches(&request, &notes_offer), "the request does not name an API");
    assert!(!matches(&http_api_descriptor(None, None, Some("todo")), &notes_offer));
    assert!(matches(&http_api_descriptor(None, None, Some("notes")), &notes_offer));
    assert!(!matches(&request, &mail_descriptor(None)), "another interface");
    assert!(matches(&mail_descriptor(Some("a@x")), &mail_descriptor(None)));
    assert!(!matches(&mail_descriptor(Some("a@x")), &mail_descriptor(Some("b@x"))));

    let api = http_api_of(request.reader()).unwrap();
    assert_eq!(api, HttpApiRequest { origin: Some("https://api.example.com".into()), path_prefix: Some("/v1/".into()), api_name: None });
    assert_eq!(http_api_of(descriptor(&[(WEB_SESSION_ID, None)]).reader()), Some(HttpApiRequest::default()));
    assert_eq!(http_api_of(mail_descriptor(None).reader()), None);
    assert_eq!(mail_address_of(mail_descriptor(Some("a@x")).reader()), Some(Some("a@x".into())));
    assert_eq!(mail_address_of(mail_descriptor(None).reader()), Some(None));
    assert_eq!(mail_address_of(request.reader()), None);
    assert_ne!(WEB_SESSION_ID, MAIL_SENDER_ID);
    assert_eq!(WEB_SESSION_ID, 0xd5d7_a127_1934_2d3b, "the WebSession interface id from web_session.capnp");
}

#[test]
fn queries_round_trip_through_base64url() {
    let d = http_api_descriptor(Some("https://api.example.com"), None, None).with_quality(MatchQuality::Preferred);
    let text = encode_descriptor(&d);
    assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{text}");
    let back = decode_query(&text).unwrap();
    assert_eq!(encode_descriptor(&back), text);
    assert_eq!(back.reader().get_quality().unwrap(), MatchQuality::Preferred);
    assert_eq!(http_api_of(back.reader()).unwrap().origin.as_deref(), Some("https://api.example.com"));
    let padded = format!("{text}{}", "=".repeat((4 - text.len() % 4) % 4));
    assert!(decode_query(&padded).is_ok(), "padding is accepted");
    assert_eq!(decode_request(&[text.clone(), text.clone()]).unwrap().len(), 2);
    assert_eq!(decode_request(&vec![text; MAX_QUERY_DESCRIPTORS + 1]).unwrap_err(), QueryError::TooMany);
}

#[test]
fn malformed_oversized_and_deep_queries_are_rejected() {
    assert_eq!(decode_query("not base64!").unwrap_err(), QueryError::NotBase64);
    assert!(matches!(decode_query("AAAA").unwrap_err(), QueryError::Malformed(_)));
    assert!(matches!(decode_query("").unwrap_err(), QueryError::Malformed(_)));
    let big = B64.encode(vec![1u8; MAX_QUERY_BYTES + 1]);
    assert_eq!(decode_query(&big).unwrap_err(), QueryError::TooLarge);
    assert_eq!(decode_query(&"A".repeat(100_000)).unwrap_err(), QueryError::TooLarge);
    // A query just under the size limit but whose packed zeros unpack past the traversal limit.
    let mut huge = Builder::new_default();
    {
        let root = huge.init_root::<powerbox_descriptor::Builder>();
        let mut tag = root.init_tags(1).get(0);
        tag.set_id(1);
        tag.init_value().initn_as::<capnp::primitive_list::Builder<u64>>(20_000);
    }
    let mut bytes = Vec::new();
    capnp::serialize_packed::write_message(&mut bytes, &huge).unwrap();
    assert!(bytes.len() < MAX_QUERY_BYTES, "{}", bytes.len());
    assert!(matches!(decode_query(&B64.encode(&bytes)).unwrap_err(), QueryError::Malformed(_)));
    // Nesting deeper than the limit: descriptors nested in tag values.
    let mut deep = Builder::new_default();
    {
        let mut value = {
            let root = deep.init_root::<powerbox_descriptor::Builder>();
            let mut tag = root.init_tags(1).get(0);
            tag.set_id(1);
            tag.init_value()
        };
        for _ in 0..40 {
            let d = value.init_as::<powerbox_descriptor::Builder>();
            let mut tag = d.init_tags(1).get(0);
            tag.set_id(1);
            value = tag.init_value();
        }
    }
    let mut bytes = Vec::new();
    capnp::serialize_packed::write_message(&mut bytes, &deep).unwrap();
    let err = decode_query(&B64.encode(&bytes)).unwrap_err();
    assert!(matches!(err, QueryError::Malformed(_)), "{err:?}");
    assert!(err.to_string().contains("build it with the powerbox schema"));
    assert!(err.to_string().contains("deeply-nested"), "{err}");
}

#[test]
fn an_interface_offer_matches_requests_for_its_type_id_and_packed_bytes_round_trip() {
    const COUNTER: u64 = 0xa238_4a22_bc95_e238;
    let offer = interface_descriptor(COUNTER);
    let with_value = descriptor(&[(COUNTER, Some(&info(Some("my tally"), None)))]);
    assert!(matches(&descriptor(&[(COUNTER, None)]), &offer));
    assert!(matches(&with_value, &offer), "a request's tag value matches the offer's null");
    assert!(!matches(&descriptor(&[(COUNTER ^ 1, None)]), &offer));
    assert!(!matches(&descriptor(&[(COUNTER, None), (WEB_SESSION_ID, None)]), &offer), "every request tag must be offered");
    let back = unpack_descriptor(&packed_descriptor(&with_value)).unwrap();
    assert_eq!(encode_descriptor(&back), encode_descriptor(&with_value));
    assert!(matches!(unpack_descriptor(b"\x10\x05garbage"), Err(QueryError::Malformed(_))));
}
