//! SMART App Launch scopes: parsing v2 (`patient/Immunization.rs?…`) and v1 (`.read`) forms,
//! downscoping a request to what a client may have, and deciding one FHIR interaction.
//!
//! Source: SMART App Launch 2.x, "Scopes and Launch Context"
//! (<https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html>).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::AuthError;

/// Whose data a clinical scope reaches (the part before `/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    /// `patient/`: the records of the patient in context (for a parent, resolved by the gateway
    /// from RelatedPerson links to the parent's own children).
    Patient,
    /// `user/`: whatever the signed-in user may see.
    User,
    /// `system/`: a backend client acting under its pre-configured policy.
    System,
}

impl Context {
    /// The scope prefix, without the slash.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// A set of the five SMART v2 permissions (`c r u d s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const CREATE: Permissions = Permissions(1);
    pub const READ: Permissions = Permissions(2);
    pub const UPDATE: Permissions = Permissions(4);
    pub const DELETE: Permissions = Permissions(8);
    pub const SEARCH: Permissions = Permissions(16);
    /// `.cruds`, also v1 `.*`.
    pub const ALL: Permissions = Permissions(31);
    const LETTERS: [(char, Permissions); 5] = [
        ('c', Permissions::CREATE),
        ('r', Permissions::READ),
        ('u', Permissions::UPDATE),
        ('d', Permissions::DELETE),
        ('s', Permissions::SEARCH),
    ];

    /// Parses a v2 suffix: a non-empty subsequence of the in-order string `cruds`. Out-of-order
    /// or repeated letters (`.dus`, `.rr`) are refused, as the spec allows, so that nothing is
    /// read into a convention it does not define.
    pub fn parse_v2(text: &str) -> Option<Permissions> {
        let mut bits = 0u8;
        let mut next = 0usize;
        for ch in text.chars() {
            let index = Self::LETTERS[next..].iter().position(|(l, _)| *l == ch)? + next;
            bits |= Self::LETTERS[index].1.0;
            next = index + 1;
        }
        (bits != 0).then_some(Permissions(bits))
    }

    /// The v1 suffixes and their v2 meaning: `.read` ⇒ `.rs`, `.write` ⇒ `.cud`, `.*` ⇒ `.cruds`.
    pub fn parse_v1(text: &str) -> Option<Permissions> {
        match text {
            "read" => Some(Permissions(Self::READ.0 | Self::SEARCH.0)),
            "write" => Some(Permissions(
                Self::CREATE.0 | Self::UPDATE.0 | Self::DELETE.0,
            )),
            "*" => Some(Self::ALL),
            _ => None,
        }
    }

    /// The v1 suffix that means exactly these permissions, if there is one.
    pub fn v1_suffix(self) -> Option<&'static str> {
        ["read", "write", "*"]
            .into_iter()
            .find(|s| Self::parse_v1(s) == Some(self))
    }

    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersect(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }

    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (letter, p) in Self::LETTERS {
            if self.contains(p) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// A clinical-data scope: `context/Type.perms[?param=value&…]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClinicalScope {
    pub context: Context,
    /// The resource type, or `None` for the `*` wildcard.
    pub resource_type: Option<String>,
    pub permissions: Permissions,
    /// Granular restrictions (`?category=…|laboratory`), in written order; all must hold.
    /// Kept as written: the gateway applies them as search parameters.
    pub restrictions: Vec<(String, String)>,
    /// Written in the v1 form (`.read`); rendered back that way while the permissions still
    /// have a v1 spelling (SMART: servers SHOULD return v1 scopes when v1 scopes were asked).
    pub v1: bool,
}

impl ClinicalScope {
    fn covers_type(&self, resource_type: &str) -> bool {
        self.resource_type
            .as_deref()
            .is_none_or(|t| t == resource_type)
    }
}

impl fmt::Display for ClinicalScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}.",
            self.context.as_str(),
            self.resource_type.as_deref().unwrap_or("*")
        )?;
        match self.permissions.v1_suffix().filter(|_| self.v1) {
            Some(suffix) => write!(f, "{suffix}")?,
            None => write!(f, "{}", self.permissions)?,
        }
        for (i, (name, value)) in self.restrictions.iter().enumerate() {
            write!(f, "{}{name}={value}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// One SMART scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Clinical(ClinicalScope),
    /// `openid`: an OpenID Connect id_token.
    OpenId,
    /// `fhirUser`: the user's FHIR resource URL in the id_token / token response.
    FhirUser,
    /// `launch`: EHR launch context.
    Launch,
    /// `launch/<name>` (`launch/patient`, `launch/encounter`): standalone launch context.
    LaunchContext(String),
    /// `offline_access`: a refresh token usable after the user leaves.
    OfflineAccess,
    /// `online_access`: a refresh token usable while the user is online.
    OnlineAccess,
}

impl Scope {
    /// Parses one scope token.
    pub fn parse(text: &str) -> Result<Scope, AuthError> {
        let bad = |reason: &str| AuthError::InvalidScope {
            scope: text.to_owned(),
            reason: reason.to_owned(),
        };
        match text {
            "openid" => return Ok(Scope::OpenId),
            "fhirUser" => return Ok(Scope::FhirUser),
            "launch" => return Ok(Scope::Launch),
            "offline_access" => return Ok(Scope::OfflineAccess),
            "online_access" => return Ok(Scope::OnlineAccess),
            "" => return Err(bad("empty scope")),
            _ => {}
        }
        if let Some(name) = text.strip_prefix("launch/") {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad("launch context name must be letters and digits"));
            }
            return Ok(Scope::LaunchContext(name.to_owned()));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("whitespace or control character inside a scope"));
        }
        let (prefix, rest) = text.split_once('/').ok_or_else(|| {
            bad("unknown scope (expected patient/, user/, system/ or a named scope)")
        })?;
        let context = match prefix {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return Err(bad("context must be patient, user or system")),
        };
        let (body, query) = match rest.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (rest, None),
        };
        let (resource, suffix) = body
            .split_once('.')
            .ok_or_else(|| bad("missing '.' before the permissions"))?;
        let resource_type = match resource {
            "*" => None,
            name if is_resource_type_name(name) => Some(name.to_owned()),
            _ => {
                return Err(bad(
                    "resource type must be '*' or a FHIR type name like Immunization",
                ));
            }
        };
        let (permissions, v1) = match Permissions::parse_v1(suffix) {
            Some(p) => (p, true),
            None => (
                Permissions::parse_v2(suffix).ok_or_else(|| {
                    bad("permissions must be an in-order subset of 'cruds' or read/write/*")
                })?,
                false,
            ),
        };
        let mut restrictions = Vec::new();
        if let Some(query) = query {
            if v1 {
                return Err(bad("v1 scopes take no ?param=value restrictions"));
            }
            for pair in query.split('&') {
                let (name, value) = pair
                    .split_once('=')
                    .ok_or_else(|| bad("restriction must be param=value"))?;
                if name.is_empty() || value.is_empty() {
                    return Err(bad("restriction must have a non-empty param and value"));
                }
                restrictions.push((name.to_owned(), value.to_owned()));
            }
        }
        Ok(Scope::Clinical(ClinicalScope {
            context,
            resource_type,
            permissions,
            restrictions,
            v1,
        }))
    }
}

/// FHIR type names start with an upper-case letter and are letters only (R4 has no digits in
/// resource names); checking the exact list is the gateway's job (it knows what it serves).
fn is_resource_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphabetic())
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Clinical(c) => c.fmt(f),
            Scope::OpenId => f.write_str("openid"),
            Scope::FhirUser => f.write_str("fhirUser"),
            Scope::Launch => f.write_str("launch"),
            Scope::LaunchContext(name) => write!(f, "launch/{name}"),
            Scope::OfflineAccess => f.write_str("offline_access"),
            Scope::OnlineAccess => f.write_str("online_access"),
        }
    }
}

/// An ordered set of scopes; serialises as the space-separated OAuth `scope` string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// Parses a space-separated `scope` parameter (RFC 6749 §3.3). Duplicates are dropped.
    pub fn parse(text: &str) -> Result<ScopeSet, AuthError> {
        Self::parse_all(text.split(' ').filter(|s| !s.is_empty()))
    }

    /// Parses scopes given one per item (as in a configuration list).
    pub fn parse_all<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<ScopeSet, AuthError> {
        let mut set = ScopeSet::default();
        for item in items {
            set.push(Scope::parse(item)?);
        }
        Ok(set)
    }

    fn push(&mut self, scope: Scope) {
        if !self.0.contains(&scope) {
            self.0.push(scope);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// The clinical scopes.
    pub fn clinical(&self) -> impl Iterator<Item = &ClinicalScope> {
        self.0.iter().filter_map(|s| match s {
            Scope::Clinical(c) => Some(c),
            _ => None,
        })
    }

    /// Whether any clinical scope is in this context (a `patient/` scope obliges the server
    /// to supply a `patient` launch context).
    pub fn has_context(&self, context: Context) -> bool {
        self.clinical().any(|c| c.context == context)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            scope.fmt(f)?;
        }
        Ok(())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::default();
        for scope in iter {
            set.push(scope);
        }
        set
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ScopeSet::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Downscoping: the scopes of `requested` that `allowed` permits, each narrowed to what is
/// allowed.
///
/// The rule, per requested scope:
/// - a named scope (`openid`, `fhirUser`, `launch`, `launch/patient`, `offline_access`,
///   `online_access`) is granted only if `allowed` lists it;
/// - a clinical scope is intersected with every allowed clinical scope of the same context:
///   the resource type is the narrower of the two (`*` ∩ `Immunization` = `Immunization`,
///   different types give nothing), the permissions are the common letters, and the granular
///   restrictions are the conjunction of both (restrictions narrow, so the union of the
///   `param=value` lists is the intersection of the data). Intersections with no permission are
///   dropped.
///
/// So `user/*.cruds` allowed and `user/Patient.rs` requested gives `user/Patient.rs`;
/// `patient/Immunization.cruds` requested with `patient/*.rs` allowed gives
/// `patient/Immunization.rs`; `system/Patient.r` requested with only `user/*.cruds` allowed gives
/// nothing. Results with the same context, type and restrictions are merged, and a result that
/// another result already covers is dropped. An empty result is the caller's `invalid_scope`.
pub fn grant(requested: &ScopeSet, allowed: &ScopeSet) -> ScopeSet {
    let mut named = Vec::new();
    // (context, type, restrictions) → (permissions, v1 as requested), kept in first-seen order.
    let mut merged: Vec<ClinicalScope> = Vec::new();
    for scope in requested.iter() {
        let Scope::Clinical(want) = scope else {
            if allowed.contains(scope) {
                named.push(scope.clone());
            }
            continue;
        };
        for may in allowed.clinical().filter(|a| a.context == want.context) {
            let Some(narrowed) = intersect(want, may) else {
                continue;
            };
            match merged.iter_mut().find(|m| {
                m.context == narrowed.context
                    && m.resource_type == narrowed.resource_type
                    && m.restrictions == narrowed.restrictions
            }) {
                Some(existing) => {
                    existing.permissions = existing.permissions.union(narrowed.permissions)
                }
                None => merged.push(narrowed),
            }
        }
    }
    let kept: Vec<ClinicalScope> = merged
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            !merged
                .iter()
                .enumerate()
                .any(|(j, other)| j != *i && covers(other, s) && !(covers(s, other) && j > *i))
        })
        .map(|(_, s)| s.clone())
        .collect();
    kept.into_iter().map(Scope::Clinical).chain(named).collect()
}

fn intersect(want: &ClinicalScope, may: &ClinicalScope) -> Option<ClinicalScope> {
    let resource_type = match (&want.resource_type, &may.resource_type) {
        (Some(a), Some(b)) if a != b => return None,
        (Some(a), _) | (None, Some(a)) => Some(a.clone()),
        (None, None) => None,
    };
    let permissions = want.permissions.intersect(may.permissions);
    if permissions.is_empty() {
        return None;
    }
    let mut restrictions = want.restrictions.clone();
    for pair in &may.restrictions {
        if !restrictions.contains(pair) {
            restrictions.push(pair.clone());
        }
    }
    Some(ClinicalScope {
        context: want.context,
        resource_type,
        permissions,
        restrictions,
        v1: want.v1,
    })
}

/// Whether `a` grants everything `b` grants.
fn covers(a: &ClinicalScope, b: &ClinicalScope) -> bool {
    a.context == b.context
        && (a.resource_type.is_none() || a.resource_type == b.resource_type)
        && a.permissions.contains(b.permissions)
        && a.restrictions.iter().all(|r| b.restrictions.contains(r))
}

/// A FHIR interaction, reduced to the SMART permission letter it needs.
///
/// SMART v2 maps: `c` create; `r` read, vread, instance history; `u` update, patch;
/// `d` delete; `s` search, type and system history. Build one with [`Interaction::from_fhir`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    /// Maps a FHIR RESTful interaction code (R4 `TypeRestfulInteraction` /
    /// `SystemRestfulInteraction` names) to the permission it needs. `history-instance` needs
    /// `r`; `history-type` and `history-system` need `s` (as SMART v2 lists them).
    pub fn from_fhir(code: &str) -> Option<Interaction> {
        Some(match code {
            "create" => Interaction::Create,
            "read" | "vread" | "history-instance" => Interaction::Read,
            "update" | "patch" => Interaction::Update,
            "delete" => Interaction::Delete,
            "search-type" | "search-system" | "search" | "history-type" | "history-system" => {
                Interaction::Search
            }
            _ => return None,
        })
    }

    /// The permission letter.
    pub fn permission(self) -> Permissions {
        match self {
            Interaction::Create => Permissions::CREATE,
            Interaction::Read => Permissions::READ,
            Interaction::Update => Permissions::UPDATE,
            Interaction::Delete => Permissions::DELETE,
            Interaction::Search => Permissions::SEARCH,
        }
    }
}

/// Which interaction each FHIR operation counts as, by name with its `$`. SMART defines no
/// operation scopes, so this is configuration; an operation not listed is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperationPermissions(pub BTreeMap<String, Interaction>);

impl Default for OperationPermissions {
    /// Read-only operations read; `$validate` only inspects the body it is given, so it counts
    /// as a read of the type.
    fn default() -> Self {
        let read = [
            "$everything",
            "$validate",
            "$lookup",
            "$validate-code",
            "$expand",
            "$immunization-evaluate",
            "$immunization-recommendation",
        ];
        OperationPermissions(
            read.into_iter()
                .map(|name| (name.to_owned(), Interaction::Read))
                .collect(),
        )
    }
}

impl OperationPermissions {
    pub fn interaction(&self, operation: &str) -> Option<Interaction> {
        self.0.get(operation).copied()
    }
}

/// The restriction under which an interaction is permitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restriction {
    /// A scope without `?param=value` permits it.
    None,
    /// Only granular scopes permit it: the data must match at least one of these conjunctions
    /// of search parameters (the gateway adds them to a search, or checks a read result).
    AnyOf(Vec<Vec<(String, String)>>),
}

/// The answer to "may this token do this?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Permitted in this context (the broadest that permits: system, then user, then patient;
    /// the gateway then applies that context's rule, e.g. the patient compartment).
    Permit {
        context: Context,
        restriction: Restriction,
    },
    /// Refused; `missing` is the narrowest scope that would have permitted it, for the
    /// 403 OperationOutcome and the `WWW-Authenticate` `scope` attribute.
    Deny { missing: String },
}

impl Decision {
    /// `Ok` for a permit, `InsufficientScope` for a deny.
    pub fn into_result(self) -> Result<(Context, Restriction), AuthError> {
        match self {
            Decision::Permit {
                context,
                restriction,
            } => Ok((context, restriction)),
            Decision::Deny { missing } => Err(AuthError::InsufficientScope { missing }),
        }
    }
}

/// Decides one interaction on one resource type against the granted scopes.
pub fn authorize(granted: &ScopeSet, interaction: Interaction, resource_type: &str) -> Decision {
    let needed = interaction.permission();
    for context in [Context::System, Context::User, Context::Patient] {
        let permitting: Vec<&ClinicalScope> = granted
            .clinical()
            .filter(|s| {
                s.context == context
                    && s.covers_type(resource_type)
                    && s.permissions.contains(needed)
            })
            .collect();
        if permitting.is_empty() {
            continue;
        }
        let restriction = if permitting.iter().any(|s| s.restrictions.is_empty()) {
            Restriction::None
        } else {
            Restriction::AnyOf(permitting.iter().map(|s| s.restrictions.clone()).collect())
        };
        return Decision::Permit {
            context,
            restriction,
        };
    }
    // Name the scope in the context the token already works in, so the message tells the client
    // what to ask for; a token with no clinical scope is told the user-level form.
    let context = [Context::System, Context::User, Context::Patient]
        .into_iter()
        .find(|c| granted.has_context(*c))
        .unwrap_or(Context::User);
    Decision::Deny {
        missing: format!("{}/{resource_type}.{}", context.as_str(), needed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> ScopeSet {
        ScopeSet::parse(text).unwrap()
    }

    #[test]
    fn parses_and_renders_back() {
        // (input, rendered)
        let cases = [
            ("patient/Immunization.rs", "patient/Immunization.rs"),
            ("user/*.cruds", "user/*.cruds"),
            ("system/Patient.r", "system/Patient.r"),
            ("patient/Observation.read", "patient/Observation.read"),
            ("user/*.write", "user/*.write"),
            ("system/*.*", "system/*.*"),
            ("patient/Observation.cu", "patient/Observation.cu"),
            (
                "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            ),
            (
                "user/Immunization.s?status=completed&vaccine-code=bcg",
                "user/Immunization.s?status=completed&vaccine-code=bcg",
            ),
            ("openid", "openid"),
            ("fhirUser", "fhirUser"),
            ("launch", "launch"),
            ("launch/patient", "launch/patient"),
            ("offline_access", "offline_access"),
            ("online_access", "online_access"),
        ];
        for (input, rendered) in cases {
            let scope = Scope::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(scope.to_string(), rendered, "{input}");
        }
    }

    #[test]
    fn v1_maps_to_v2_permissions() {
        let cases = [("read", "rs"), ("write", "cud"), ("*", "cruds")];
        for (v1, v2) in cases {
            let Scope::Clinical(c) = Scope::parse(&format!("user/Patient.{v1}")).unwrap() else {
                panic!("{v1} is not clinical");
            };
            assert!(c.v1);
            assert_eq!(c.permissions.to_string(), v2, "{v1}");
            assert_eq!(c.permissions, Permissions::parse_v2(v2).unwrap());
        }
    }

    #[test]
    fn granular_restrictions_are_exposed() {
        let Scope::Clinical(c) =
            Scope::parse("patient/Observation.rs?category=laboratory&code=1234-5").unwrap()
        else {
            panic!("not clinical");
        };
        assert_eq!(
            c.restrictions,
            vec![
                ("category".to_owned(), "laboratory".to_owned()),
                ("code".to_owned(), "1234-5".to_owned())
            ]
        );
    }

    #[test]
    fn refuses_malformed_scopes_with_reasons() {
        // (input, a word the reason must contain)
        let cases = [
            ("", "empty"),
            ("patient/Observation.dus", "in-order"),
            ("patient/Observation.rr", "in-order"),
            ("patient/Observation.", "in-order"),
            ("patient/Observation.x", "in-order"),
            ("patient/Observation", "'.'"),
            ("doctor/Observation.r", "context"),
            ("patient/observation.r", "resource type"),
            ("patient/Obs3rvation.r", "resource type"),
            ("patient/Observation.rs?category", "param=value"),
            ("patient/Observation.rs?=x", "non-empty"),
            ("patient/Observation.read?category=x", "v1"),
            ("launch/", "launch context"),
            ("launch/pa-tient", "launch context"),
            ("profile", "unknown scope"),
            ("patient/Observation.r\u{0}", "control"),
        ];
        for (input, word) in cases {
            match Scope::parse(input) {
                Err(AuthError::InvalidScope { scope, reason }) => {
                    assert_eq!(scope, input);
                    assert!(reason.contains(word), "{input:?}: {reason}");
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn scope_set_parses_space_separated_and_dedups() {
        let s = set("openid  fhirUser patient/*.rs openid");
        assert_eq!(s.to_string(), "openid fhirUser patient/*.rs");
        assert!(ScopeSet::parse("openid nonsense").is_err());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"openid fhirUser patient/*.rs\"");
        let back: ScopeSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn downscoping_table() {
        // (requested, allowed, granted)
        let cases = [
            ("user/Patient.rs", "user/*.cruds", "user/Patient.rs"),
            ("user/*.cruds", "user/Patient.rs", "user/Patient.rs"),
            (
                "patient/Immunization.cruds",
                "patient/*.rs",
                "patient/Immunization.rs",
            ),
            ("system/Patient.r", "user/*.cruds", ""),
            ("patient/Immunization.c", "patient/*.rs", ""),
            ("patient/Immunization.rs", "patient/Patient.rs", ""),
            ("patient/*.read", "patient/*.rs", "patient/*.read"),
            ("patient/*.read", "patient/*.r", "patient/*.r"),
            (
                "patient/Observation.rs",
                "patient/Observation.rs?category=laboratory",
                "patient/Observation.rs?category=laboratory",
            ),
            (
                "patient/Observation.rs?code=x",
                "patient/Observation.rs?category=laboratory",
                "patient/Observation.rs?code=x&category=laboratory",
            ),
            (
                "openid fhirUser launch/patient offline_access patient/*.rs",
                "openid launch/patient patient/*.rs",
                "patient/*.rs openid launch/patient",
            ),
            // A scope another granted scope covers is dropped.
            (
                "patient/*.rs patient/Immunization.r",
                "patient/*.cruds",
                "patient/*.rs",
            ),
            // Two allowed scopes widen one request together.
            (
                "user/Immunization.cruds",
                "user/Immunization.rs user/Immunization.cu",
                "user/Immunization.crus",
            ),
        ];
        for (requested, allowed, granted) in cases {
            assert_eq!(
                grant(&set(requested), &set(allowed)).to_string(),
                granted,
                "requested {requested:?} allowed {allowed:?}"
            );
        }
    }

    #[test]
    fn interactions_from_fhir_names() {
        let cases = [
            ("create", Some(Interaction::Create)),
            ("read", Some(Interaction::Read)),
            ("vread", Some(Interaction::Read)),
            ("history-instance", Some(Interaction::Read)),
            ("history-type", Some(Interaction::Search)),
            ("history-system", Some(Interaction::Search)),
            ("search-type", Some(Interaction::Search)),
            ("update", Some(Interaction::Update)),
            ("patch", Some(Interaction::Update)),
            ("delete", Some(Interaction::Delete)),
            ("transaction", None),
        ];
        for (code, expected) in cases {
            assert_eq!(Interaction::from_fhir(code), expected, "{code}");
        }
        let ops = OperationPermissions::default();
        assert_eq!(ops.interaction("$everything"), Some(Interaction::Read));
        assert_eq!(ops.interaction("$purge"), None);
    }

    #[test]
    fn authorization_table() {
        use Interaction::*;
        // (granted, interaction, type, expected: Ok(context, restricted?) or Err(missing))
        // Ok(context, restricted?) or Err(missing scope).
        type Expected = Result<(Context, bool), &'static str>;
        let cases: Vec<(&str, Interaction, &str, Expected)> = vec![
            (
                "patient/Immunization.rs",
                Read,
                "Immunization",
                Ok((Context::Patient, false)),
            ),
            (
                "patient/Immunization.rs",
                Search,
                "Immunization",
                Ok((Context::Patient, false)),
            ),
            (
                "patient/Immunization.rs",
                Create,
                "Immunization",
                Err("patient/Immunization.c"),
            ),
            (
                "patient/Immunization.rs",
                Read,
                "Patient",
                Err("patient/Patient.r"),
            ),
            (
                "user/*.cruds",
                Delete,
                "Patient",
                Ok((Context::User, false)),
            ),
            (
                "system/Patient.r",
                Read,
                "Patient",
                Ok((Context::System, false)),
            ),
            (
                "system/Patient.r",
                Search,
                "Patient",
                Err("system/Patient.s"),
            ),
            (
                "patient/*.read",
                Search,
                "Observation",
                Ok((Context::Patient, false)),
            ),
            (
                "patient/*.write",
                Update,
                "Observation",
                Ok((Context::Patient, false)),
            ),
            (
                "patient/*.write",
                Read,
                "Observation",
                Err("patient/Observation.r"),
            ),
            // The broadest context wins.
            (
                "patient/*.rs system/Immunization.r",
                Read,
                "Immunization",
                Ok((Context::System, false)),
            ),
            // Granular only: permitted with a restriction.
            (
                "patient/Observation.rs?category=laboratory",
                Search,
                "Observation",
                Ok((Context::Patient, true)),
            ),
            // Granular plus plain: unrestricted.
            (
                "patient/Observation.rs?category=laboratory patient/Observation.s",
                Search,
                "Observation",
                Ok((Context::Patient, false)),
            ),
            ("openid fhirUser", Read, "Patient", Err("user/Patient.r")),
            ("", Read, "Patient", Err("user/Patient.r")),
        ];
        for (granted, interaction, resource_type, expected) in cases {
            let decision = authorize(&set(granted), interaction, resource_type);
            let got = match decision {
                Decision::Permit {
                    context,
                    restriction,
                } => Ok((context, restriction != Restriction::None)),
                Decision::Deny { ref missing } => Err(missing.as_str()),
            };
            assert_eq!(got, expected, "{granted:?} {interaction:?} {resource_type}");
        }
    }

    #[test]
    fn restricted_permit_lists_each_alternative() {
        let granted =
            set("user/Observation.r?category=laboratory user/Observation.rs?code=x&status=final");
        let decision = authorize(&granted, Interaction::Read, "Observation");
        assert_eq!(
            decision,
            Decision::Permit {
                context: Context::User,
                restriction: Restriction::AnyOf(vec![
                    vec![("category".into(), "laboratory".into())],
                    vec![
                        ("code".into(), "x".into()),
                        ("status".into(), "final".into())
                    ],
                ]),
            }
        );
        let denied = authorize(&granted, Interaction::Create, "Observation").into_result();
        assert_eq!(
            denied,
            Err(AuthError::InsufficientScope {
                missing: "user/Observation.c".into()
            })
        );
    }
}
