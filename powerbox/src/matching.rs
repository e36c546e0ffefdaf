//! Powerbox descriptors: decoding a query, encoding one, the offers the server builds, and the
//! matching rules (SPEC "Descriptors and matching"), implemented once and generically over
//! Cap'n Proto values — no knowledge of the tag's schema.

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use capnp::message::{Builder, HeapAllocator, ReaderOptions};
use capnp::private::layout::ElementSize;
use capnp::traits::HasTypeId;
use granary_schema::mail_capnp::mail_sender;
use granary_schema::powerbox_capnp::{http_api, mail_address, powerbox_descriptor, MatchQuality};
use granary_schema::web_session_capnp::web_session;
use std::cell::Cell;

/// A query's decoded size limit.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// Descriptors in one request at most.
pub const MAX_QUERY_DESCRIPTORS: usize = 16;
/// Words a query message may have or make a reader visit (amplified zero-size lists included).
const QUERY_TRAVERSAL_WORDS: usize = 8 * 1024;
/// Pointer nesting a query may have.
const QUERY_NESTING: i32 = 16;
/// Value comparisons one `offer_matches` may make before it answers "no match".
const MATCH_STEPS: u32 = 100_000;

/// The tag id of a `WebSession` capability.
pub const WEB_SESSION_ID: u64 = <web_session::Client as HasTypeId>::TYPE_ID;
/// The tag id of a `MailSender` capability.
pub const MAIL_SENDER_ID: u64 = <mail_sender::Client as HasTypeId>::TYPE_ID;

/// base64url; encodes without padding, accepts it either way.
const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("a powerbox query is not base64url: encode the packed PowerboxDescriptor message with base64url")]
    NotBase64,
    #[error("a powerbox query is larger than {MAX_QUERY_BYTES} bytes: ask for less")]
    TooLarge,
    #[error("a powerbox request has more than {MAX_QUERY_DESCRIPTORS} descriptors: ask for fewer")]
    TooMany,
    #[error("a powerbox query is not a packed PowerboxDescriptor message ({0}): build it with the powerbox schema")]
    Malformed(String),
}

/// A descriptor that owns its message.
pub struct OwnedDescriptor {
    message: Builder<HeapAllocator>,
}

impl OwnedDescriptor {
    /// A copy of `reader` (validated and bounded by whatever limits `reader`'s message had).
    pub fn copy_of(reader: powerbox_descriptor::Reader<'_>) -> capnp::Result<OwnedDescriptor> {
        let mut message = Builder::new_default();
        message.set_root(reader)?;
        Ok(OwnedDescriptor { message })
    }

    pub fn reader(&self) -> powerbox_descriptor::Reader<'_> {
        self.message
            .get_root_as_reader()
            .expect("an OwnedDescriptor's root is always a descriptor it copied or built")
    }

    /// The same descriptor with another quality (for offers).
    pub fn with_quality(mut self, quality: MatchQuality) -> OwnedDescriptor {
        self.message
            .get_root::<powerbox_descriptor::Builder>()
            .expect("an OwnedDescriptor's root is always a descriptor")
            .set_quality(quality);
        self
    }
}

impl Clone for OwnedDescriptor {
    fn clone(&self) -> Self {
        OwnedDescriptor::copy_of(self.reader()).expect("copying a well-formed descriptor cannot fail")
    }
}

impl std::fmt::Debug for OwnedDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwnedDescriptor({})", encode_descriptor(self))
    }
}

/// Decodes one query descriptor: base64url of a packed message whose root is a
/// `PowerboxDescriptor`, at most [`MAX_QUERY_BYTES`] decoded, traversal- and nesting-limited.
pub fn decode_query(b64url: &str) -> Result<OwnedDescriptor, QueryError> {
    if b64url.len() > MAX_QUERY_BYTES.div_ceil(3) * 4 {
        return Err(QueryError::TooLarge);
    }
    let bytes = B64.decode(b64url.trim()).map_err(|_| QueryError::NotBase64)?;
    if bytes.len() > MAX_QUERY_BYTES {
        return Err(QueryError::TooLarge);
    }
    let options = ReaderOptions { traversal_limit_in_words: Some(QUERY_TRAVERSAL_WORDS), nesting_limit: QUERY_NESTING };
    let malformed = |e: capnp::Error| QueryError::Malformed(e.to_string());
    let message = capnp::serialize_packed::read_message(&mut &bytes[..], options).map_err(malformed)?;
    let root: powerbox_descriptor::Reader = message.get_root().map_err(malformed)?;
    OwnedDescriptor::copy_of(root).map_err(malformed)
}

/// Decodes a whole request (at most [`MAX_QUERY_DESCRIPTORS`]).
pub fn decode_request<S: AsRef<str>>(queries: &[S]) -> Result<Vec<OwnedDescriptor>, QueryError> {
    if queries.len() > MAX_QUERY_DESCRIPTORS {
        return Err(QueryError::TooMany);
    }
    queries.iter().map(|q| decode_query(q.as_ref())).collect()
}

/// base64url (no padding) of the packed message: the form queries and picks travel in.
pub fn encode_descriptor(descriptor: &OwnedDescriptor) -> String {
    let mut bytes = Vec::new();
    capnp::serialize_packed::write_message(&mut bytes, &descriptor.message).expect("writing to a Vec cannot fail");
    B64.encode(bytes)
}

/// The packed message bytes of `descriptor` (what a `GrainObject` target keeps).
pub fn packed_descriptor(descriptor: &OwnedDescriptor) -> Vec<u8> {
    let mut bytes = Vec::new();
    capnp::serialize_packed::write_message(&mut bytes, &descriptor.message).expect("writing to a Vec cannot fail");
    bytes
}

/// Reads [`packed_descriptor`]'s bytes back, with a query's limits.
pub fn unpack_descriptor(bytes: &[u8]) -> Result<OwnedDescriptor, QueryError> {
    let options = ReaderOptions { traversal_limit_in_words: Some(QUERY_TRAVERSAL_WORDS), nesting_limit: QUERY_NESTING };
    let malformed = |e: capnp::Error| QueryError::Malformed(e.to_string());
    let message = capnp::serialize_packed::read_message(&mut &bytes[..], options).map_err(malformed)?;
    OwnedDescriptor::copy_of(message.get_root().map_err(malformed)?).map_err(malformed)
}

/// One tag `interface_id` with a null value: what a grain providing that raw interface offers.
pub fn interface_descriptor(interface_id: u64) -> OwnedDescriptor {
    one_tag(interface_id, None)
}

/// One tag `id` whose value is built by `value` (or null when `value` is `None`).
fn one_tag(id: u64, value: Option<&dyn Fn(capnp::any_pointer::Builder)>) -> OwnedDescriptor {
    let mut message = Builder::new_default();
    let root = message.init_root::<powerbox_descriptor::Builder>();
    let mut tag = root.init_tags(1).get(0);
    tag.set_id(id);
    if let Some(value) = value {
        value(tag.init_value());
    }
    OwnedDescriptor { message }
}

/// `WebSession` + `HttpApi{origin, pathPrefix, apiName}`; `None` fields stay null (match anything).
pub fn http_api_descriptor(origin: Option<&str>, path_prefix: Option<&str>, api_name: Option<&str>) -> OwnedDescriptor {
    one_tag(
        WEB_SESSION_ID,
        Some(&|v: capnp::any_pointer::Builder| {
            let mut api = v.init_as::<http_api::Builder>();
            if let Some(o) = origin {
                api.set_origin(o);
            }
            if let Some(p) = path_prefix {
                api.set_path_prefix(p);
            }
            if let Some(n) = api_name {
                api.set_api_name(n);
            }
        }),
    )
}

/// `MailSender` + `MailAddress{address}`; `None` stays null (any address).
pub fn mail_descriptor(address: Option<&str>) -> OwnedDescriptor {
    one_tag(
        MAIL_SENDER_ID,
        Some(&|v: capnp::any_pointer::Builder| {
            let mut m = v.init_as::<mail_address::Builder>();
            if let Some(a) = address {
                m.set_address(a);
            }
        }),
    )
}

/// What a request's `WebSession` tag asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpApiRequest {
    pub origin: Option<String>,
    pub path_prefix: Option<String>,
    pub api_name: Option<String>,
}

fn text_field(present: bool, t: capnp::Result<capnp::text::Reader<'_>>) -> Option<String> {
    if !present {
        return None;
    }
    t.ok()?.to_string().ok()
}

/// The `HttpApi` of the request's `WebSession` tag (fields absent when null); `None` when the
/// request has no such tag or its value is not readable as `HttpApi`.
pub fn http_api_of(request: powerbox_descriptor::Reader<'_>) -> Option<HttpApiRequest> {
    let tag = request.get_tags().ok()?.iter().find(|t| t.get_id() == WEB_SESSION_ID)?;
    if !tag.has_value() {
        return Some(HttpApiRequest::default());
    }
    let api: http_api::Reader = tag.get_value().get_as().ok()?;
    Some(HttpApiRequest {
        origin: text_field(api.has_origin(), api.get_origin()),
        path_prefix: text_field(api.has_path_prefix(), api.get_path_prefix()),
        api_name: text_field(api.has_api_name(), api.get_api_name()),
    })
}

/// `Some(address)` when the request has a `MailSender` tag (`address` `None` when null).
pub fn mail_address_of(request: powerbox_descriptor::Reader<'_>) -> Option<Option<String>> {
    let tag = request.get_tags().ok()?.iter().find(|t| t.get_id() == MAIL_SENDER_ID)?;
    if !tag.has_value() {
        return Some(None);
    }
    let m: mail_address::Reader = tag.get_value().get_as().ok()?;
    Some(text_field(m.has_address(), m.get_address()))
}

/// Ordering key for "best first": preferred, acceptable, unacceptable.
pub fn quality_rank(q: MatchQuality) -> u8 {
    match q {
        MatchQuality::Preferred => 2,
        MatchQuality::Acceptable => 1,
        MatchQuality::Unacceptable => 0,
    }
}

/// The offer's quality when it satisfies the request descriptor: every request tag has an
/// offer tag with the same id whose value matches.
pub fn offer_matches(request: powerbox_descriptor::Reader<'_>, offer: powerbox_descriptor::Reader<'_>) -> Option<MatchQuality> {
    let steps = Cell::new(MATCH_STEPS);
    let offer_tags = offer.get_tags().ok()?;
    for wanted in request.get_tags().ok()?.iter() {
        let found = offer_tags
            .iter()
            .any(|t| t.get_id() == wanted.get_id() && values_match(wanted.get_value(), t.get_value(), &steps));
        if !found {
            return None;
        }
    }
    offer.get_quality().ok()
}

/// The offer's quality when it satisfies any descriptor of the request.
pub fn request_matches(request: &[OwnedDescriptor], offer: &OwnedDescriptor) -> Option<MatchQuality> {
    request.iter().find_map(|r| offer_matches(r.reader(), offer.reader()))
}

/// Reads any struct pointer, whatever its type: its data and pointer sections.
type AnyStruct<'a> = powerbox_descriptor::Reader<'a>;
type AnyList<'a> = capnp::struct_list::Reader<'a, powerbox_descriptor::Owned>;

fn values_match(req: capnp::any_pointer::Reader<'_>, offer: capnp::any_pointer::Reader<'_>, steps: &Cell<u32>) -> bool {
    if req.is_null() || offer.is_null() {
        return true;
    }
    if !take_step(steps) {
        return false;
    }
    if let (Ok(r), Ok(o)) = (req.get_as::<AnyStruct>(), offer.get_as::<AnyStruct>()) {
        return structs_match(r, o, steps);
    }
    if let (Ok(r), Ok(o)) = (req.get_as::<AnyList>(), offer.get_as::<AnyList>()) {
        return lists_match(r, o, steps);
    }
    if let (Ok(r), Ok(o)) =
        (req.get_as::<capnp::primitive_list::Reader<bool>>(), offer.get_as::<capnp::primitive_list::Reader<bool>>())
    {
        let same_size = capnp::raw::get_list_element_size(r) == ElementSize::Bit
            && capnp::raw::get_list_element_size(o) == ElementSize::Bit;
        return same_size && r.len() == o.len() && r.iter().eq(o.iter());
    }
    // Capabilities, mixed kinds, unreadable pointers.
    false
}

/// Spends one comparison of the budget; false when it is spent (the match then fails).
fn take_step(steps: &Cell<u32>) -> bool {
    let Some(left) = steps.get().checked_sub(1) else { return false };
    steps.set(left);
    true
}

fn structs_match(req: AnyStruct<'_>, offer: AnyStruct<'_>, steps: &Cell<u32>) -> bool {
    if !take_step(steps) {
        return false;
    }
    let (rd, od) = (capnp::raw::get_struct_data_section(req), capnp::raw::get_struct_data_section(offer));
    let data_equal = (0..rd.len().max(od.len())).all(|i| rd.get(i).unwrap_or(&0) == od.get(i).unwrap_or(&0));
    if !data_equal {
        return false;
    }
    let (rp, op) = (capnp::raw::get_struct_pointer_section(req), capnp::raw::get_struct_pointer_section(offer));
    // Beyond the shorter section the missing pointers are null, which match anything.
    (0..rp.len().min(op.len())).all(|i| values_match(rp.get(i), op.get(i), steps))
}

fn lists_match(req: AnyList<'_>, offer: AnyList<'_>, steps: &Cell<u32>) -> bool {
    let size = capnp::raw::get_list_element_size(req);
    if size != capnp::raw::get_list_element_size(offer) {
        return false;
    }
    if size == ElementSize::InlineComposite {
        // Sets: each requested element matches some offered one.
        return req.iter().all(|r| offer.iter().any(|o| structs_match(r, o, steps)));
    }
    // Primitive and pointer lists (text and data included), element by element.
    req.len() == offer.len() && req.iter().zip(offer.iter()).all(|(r, o)| structs_match(r, o, steps))
}

#[cfg(test)]
#[path = "matching_tests.rs"]
mod tests;
