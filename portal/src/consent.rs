//! The person's continuous-access consent (期間連携): one consent allows the portal to be read
//! for a fixed number of days (90 per jp-specs §2.1, §5.2; the number is data in the layout file
//! because the guideline says it may change). Pure: every check takes `now`.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::PortalError;

/// One consent's window. Access is allowed from `granted_at` (inclusive) until `expires_at`
/// (exclusive), unless revoked earlier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousAccess {
    #[serde(with = "time::serde::rfc3339")]
    pub granted_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl ContinuousAccess {
    /// A consent given at `granted_at` for `days` days (counted as `days` × 24 hours from the
    /// moment of consent: the guideline's exact counting rule is not known, jp-specs §2.1).
    pub fn grant(granted_at: OffsetDateTime, days: u32) -> Self {
        ContinuousAccess {
            granted_at,
            expires_at: granted_at + Duration::days(i64::from(days)),
            revoked_at: None,
        }
    }

    /// Withdraw the consent from `at` on (the earliest withdrawal is kept).
    pub fn revoke(&mut self, at: OffsetDateTime) {
        self.revoked_at = Some(self.revoked_at.map_or(at, |r| r.min(at)));
    }

    /// Whether the portal may be read at `now`; the error says why not. Callers check this
    /// before every request, so an expired consent never reaches the portal.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), PortalError> {
        if let Some(revoked_at) = self.revoked_at.filter(|r| *r <= now) {
            return Err(PortalError::ConsentRevoked {
                revoked_at: Some(revoked_at),
            });
        }
        if now >= self.expires_at {
            return Err(PortalError::ConsentExpired {
                expired_at: Some(self.expires_at),
            });
        }
        if now < self.granted_at {
            // A clock that runs behind the grant is a configuration fault, not a consent.
            return Err(PortalError::ConsentExpired { expired_at: None });
        }
        Ok(())
    }

    /// Time left at `now` (zero when expired or revoked), e.g. to remind the person to renew.
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        if self.check(now).is_err() {
            return Duration::ZERO;
        }
        self.expires_at - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ninety_day_window() {
        let granted = datetime!(2026-01-10 09:00 +09:00);
        let access = ContinuousAccess::grant(granted, 90);
        assert_eq!(access.expires_at, datetime!(2026-04-10 09:00 +09:00));
        let cases: &[(OffsetDateTime, Option<&str>)] = &[
            (granted, None),
            (datetime!(2026-04-10 08:59:59 +09:00), None),
            (datetime!(2026-04-10 09:00 +09:00), Some("expired")),
            (datetime!(2026-07-01 00:00 +09:00), Some("expired")),
            // The same instant in another offset is the same answer.
            (datetime!(2026-04-10 00:00 UTC), Some("expired")),
            (datetime!(2026-04-09 23:59 UTC), None),
            (datetime!(2026-01-10 08:59 +09:00), Some("expired")),
        ];
        for (now, want) in cases {
            let got = access.check(*now).err().map(|e| e.to_string());
            match want {
                None => assert!(got.is_none(), "{now}: {got:?}"),
                Some(w) => assert!(got.as_deref().unwrap_or("").contains(w), "{now}: {got:?}"),
            }
        }
    }

    #[test]
    fn revoked_consent_is_refused_from_the_revocation_on() {
        let granted = datetime!(2026-01-10 09:00 UTC);
        let mut access = ContinuousAccess::grant(granted, 90);
        access.revoke(datetime!(2026-02-01 00:00 UTC));
        access.revoke(datetime!(2026-03-01 00:00 UTC));
        assert_eq!(access.revoked_at, Some(datetime!(2026-02-01 00:00 UTC)));
        assert!(access.check(datetime!(2026-01-31 23:59 UTC)).is_ok());
        assert!(matches!(
            access.check(datetime!(2026-02-01 00:00 UTC)),
            Err(PortalError::ConsentRevoked { .. })
        ));
        assert_eq!(
            access.remaining(datetime!(2026-02-02 00:00 UTC)),
            Duration::ZERO
        );
        assert_eq!(
            access.remaining(datetime!(2026-01-31 00:00 UTC)),
            datetime!(2026-04-10 09:00 UTC) - datetime!(2026-01-31 00:00 UTC)
        );
    }

    #[test]
    fn serialises_as_rfc3339() {
        let access = ContinuousAccess::grant(datetime!(2026-01-10 09:00 +09:00), 90);
        let json = serde_json::to_value(&access).unwrap();
        assert_eq!(json["grantedAt"], "2026-01-10T09:00:00+09:00");
        assert_eq!(json["expiresAt"], "2026-04-10T09:00:00+09:00");
        let back: ContinuousAccess = serde_json::from_value(json).unwrap();
        assert_eq!(back, access);
    }
}
