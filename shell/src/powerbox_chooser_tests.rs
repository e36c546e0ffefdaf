use super::*;
use granary_powerbox::matching::{http_api_descriptor, mail_descriptor};

fn notes_entry() -> ApiProvide {
    ApiProvide { api: "notes".into(), title: "Notes".into(), path_prefix: "/api/".into(), permissions: vec![true], chooser_path: "/choose".into(), interface_id: 0 }
}

fn check(request: &OwnedDescriptor, offered: &OwnedDescriptor) -> Result<String, FulfilError> {
    check_fulfilment(&notes_entry(), request.reader(), offered.reader()).map(|(prefix, granted)| {
        // What the requester is told it got is exactly the narrowed offer.
        let prefix = prefix.expect("an HTTP API's prefix");
        assert_eq!(matching::http_api_of(granted.reader()).unwrap().path_prefix.as_deref(), Some(prefix.as_str()));
        prefix
    })
}

#[test]
fn a_chooser_may_narrow_its_declared_prefix_and_nothing_else() {
    let asked = http_api_descriptor(None, None, Some("notes"));
    let offer = |prefix: Option<&str>| http_api_descriptor(None, prefix, Some("notes"));
    assert_eq!(check(&asked, &offer(Some("/api/notes/3/"))), Ok("/api/notes/3/".into()));
    assert_eq!(check(&asked, &offer(Some("/api/"))), Ok("/api/".into()), "the whole declared API");
    assert_eq!(check(&asked, &offer(None)), Ok("/api/".into()), "null = the declared prefix");
    assert_eq!(check(&asked, &offer(Some(""))), Ok("/api/".into()), "empty = the declared prefix");

    // Above or beside the declared prefix.
    for p in ["/", "/apix/", "/other/api/"] {
        assert_eq!(check(&asked, &offer(Some(p))), Err(FulfilError::OutsidePrefix { prefix: p.into(), declared: "/api/".into() }), "{p}");
    }
    // Not a valid prefix: no escaping it by dot segments, encodings or a missing slash.
    for p in ["/api/../admin/", "/api/notes/3", "/api//x/", "/api/%2e%2e/", "api/x/", "/api/a b/", "/api/x?y/"] {
        assert_eq!(check(&asked, &offer(Some(p))), Err(FulfilError::BadPrefix(p.into())), "{p}");
    }
    // Another API, an origin, another kind of capability.
    assert_eq!(
        check(&asked, &http_api_descriptor(None, Some("/api/"), Some("mail"))),
        Err(FulfilError::OtherApi { asked: "mail".into(), picked: "notes".into() })
    );
    assert_eq!(check(&asked, &http_api_descriptor(None, Some("/api/"), None)), Err(FulfilError::OtherApi { asked: "".into(), picked: "notes".into() }));
    assert_eq!(check(&asked, &http_api_descriptor(Some("https://evil.example"), Some("/api/"), Some("notes"))), Err(FulfilError::WithOrigin));
    assert_eq!(check(&asked, &mail_descriptor(None)), Err(FulfilError::NotHttpApi));
}

#[test]
fn what_is_chosen_must_still_match_the_request() {
    // The request names a prefix: only exactly that one matches (text compares equal).
    let asked = http_api_descriptor(None, Some("/api/notes/7/"), Some("notes"));
    assert_eq!(check(&asked, &http_api_descriptor(None, Some("/api/notes/7/"), Some("notes"))), Ok("/api/notes/7/".into()));
    assert_eq!(
        check(&asked, &http_api_descriptor(None, Some("/api/notes/3/"), Some("notes"))),
        Err(FulfilError::NoMatch { api: "notes".into(), prefix: "/api/notes/3/".into() })
    );
    // A request for any API of any grain (no apiName) matches whatever the entry is.
    let any = http_api_descriptor(None, None, None);
    assert_eq!(check(&any, &http_api_descriptor(None, Some("/api/x/"), Some("notes"))), Ok("/api/x/".into()));
}

#[test]
fn a_raw_interface_is_fulfilled_with_its_tag_and_the_apps_narrowing() {
    const COUNTER: u64 = 0xa238_4a22_bc95_e238;
    let entry = ApiProvide { interface_id: COUNTER, api: String::new(), path_prefix: String::new(), ..notes_entry() };
    let asked = matching::interface_descriptor(COUNTER);
    // The app's own narrowing: a second tag (here an HttpApi value, as any struct would do).
    let narrowed = {
        let mut m = capnp::message::Builder::new_default();
        let mut tags = m.init_root::<powerbox_descriptor::Builder>().init_tags(2);
        tags.reborrow().get(0).set_id(COUNTER);
        tags.reborrow().get(1).set_id(0x8a0b_c1d2_e3f4_0516);
        tags.get(1).init_value().set_as(matching::http_api_descriptor(None, Some("/kitchen/"), None).reader()).unwrap();
        OwnedDescriptor::copy_of(m.get_root_as_reader().unwrap()).unwrap()
    };
    let (prefix, granted) = check_fulfilment(&entry, asked.reader(), narrowed.reader()).unwrap();
    assert_eq!(prefix, None);
    assert_eq!(matching::packed_descriptor(&granted), matching::packed_descriptor(&narrowed), "what provide will get, as chosen");
    // Another interface's tag, an HTTP API, or one that does not answer the request: refused.
    let other = matching::interface_descriptor(0xb5e3_f0c2_a9d8_4f61);
    assert_eq!(check_fulfilment(&entry, asked.reader(), other.reader()).map(|(p, _)| p), Err(FulfilError::OtherInterface(COUNTER)));
    let api = http_api_descriptor(None, None, Some("notes"));
    assert_eq!(check_fulfilment(&entry, asked.reader(), api.reader()).map(|(p, _)| p), Err(FulfilError::OtherInterface(COUNTER)));
    let both = {
        let mut m = capnp::message::Builder::new_default();
        let mut tags = m.init_root::<powerbox_descriptor::Builder>().init_tags(2);
        tags.reborrow().get(0).set_id(COUNTER);
        tags.get(1).set_id(0xb5e3_f0c2_a9d8_4f61);
        OwnedDescriptor::copy_of(m.get_root_as_reader().unwrap()).unwrap()
    };
    assert!(matches!(check_fulfilment(&entry, both.reader(), narrowed.reader()), Err(FulfilError::NoMatch { .. })), "the request also wants a tag the offer lacks");
    // A descriptor too large to keep with the grant.
    let huge = {
        let mut m = capnp::message::Builder::new_default();
        let mut tags = m.init_root::<powerbox_descriptor::Builder>().init_tags(1);
        tags.reborrow().get(0).set_id(COUNTER);
        tags.get(0).init_value().set_as::<capnp::data::Owned>(&vec![7u8; matching::MAX_QUERY_BYTES * 2][..]).unwrap();
        OwnedDescriptor::copy_of(m.get_root_as_reader().unwrap()).unwrap()
    };
    assert_eq!(check_fulfilment(&entry, asked.reader(), huge.reader()).map(|(p, _)| p), Err(FulfilError::DescriptorTooLarge));
}

#[test]
fn the_chooser_page_carries_the_request_when_it_fits() {
    let q = http_api_descriptor(None, None, Some("notes"));
    let encoded = matching::encode_descriptor(&q);
    assert_eq!(chooser_page("/choose", &q), format!("/choose?powerboxRequest={encoded}"));
    assert_eq!(chooser_page("/choose?x=1", &q), format!("/choose?x=1&powerboxRequest={encoded}"));
    let long = format!("/{}", "a".repeat(2040));
    assert_eq!(chooser_page(&long, &q), long, "too long for a session's path: the bare chooser path");
}

fn chooser(id: &str, session: &str, opened: u64) -> Chooser {
    Chooser {
        id: id.into(),
        requester_grain: "a".into(),
        requester_session: "sa".into(),
        user: "u".into(),
        provider_grain: "b".into(),
        provider_title: "B".into(),
        chooser_session: session.into(),
        entry: notes_entry(),
        query: http_api_descriptor(None, None, Some("notes")),
        opened,
        result: None,
    }
}

#[test]
fn choosers_are_found_by_their_session_and_expire_with_the_claim_lifetime() {
    let mut book = ChooserBook::default();
    assert!(book.insert(chooser("c1", "s1", 100)).is_empty());
    assert!(book.insert(chooser("c2", "s2", 200)).is_empty());
    assert_eq!(book.by_session("s2").map(|c| c.id.clone()), Some("c2".into()));
    assert!(book.by_session("sa").is_none(), "the requesting session is not a chooser");
    assert!(book.prune(100 + CLAIM_LIFETIME_SECS - 1).is_empty());
    let gone: Vec<String> = book.prune(100 + CLAIM_LIFETIME_SECS).into_iter().map(|c| c.id).collect();
    assert_eq!(gone, ["c1"]);
    assert!(book.by_session("s1").is_none());
    assert_eq!(book.len(), 1);
    assert_eq!(book.remove("c2").map(|c| c.chooser_session), Some("s2".into()));
    assert!(book.is_empty());
}

#[test]
fn the_book_forgets_the_oldest_beyond_its_limit() {
    let mut book = ChooserBook::default();
    for i in 0..MAX_CHOOSERS {
        assert!(book.insert(chooser(&format!("c{i}"), &format!("s{i}"), 1000 + i as u64)).is_empty());
    }
    let gone: Vec<String> = book.insert(chooser("new", "snew", 5000)).into_iter().map(|c| c.id).collect();
    assert_eq!(gone, ["c0"]);
    assert_eq!(book.len(), MAX_CHOOSERS);
    assert!(book.get("new").is_some() && book.get("c1").is_some());
}
