//! Checking a capability's [`Requirement`]s against the server's current state, which the
//! shell provides as a [`World`].

use crate::model::Requirement;

/// The facts requirements are checked against (the shell implements it over its tables).
pub trait World {
    /// What `user` may do on `grain`, computed like sharing; `None` when the user or grain does
    /// not exist, the user is suspended, or the user has no access at all.
    fn user_permissions(&self, user: &str, grain: &str) -> Option<Vec<bool>>;
    /// Whether `user` exists, is not suspended and is an administrator.
    fn user_is_admin(&self, user: &str) -> bool;
    /// Whether the API token with this id still exists.
    fn token_valid(&self, token: &str) -> bool;
    /// `user`'s verified mail address, if they have one (and exist and are not suspended).
    fn verified_address(&self, user: &str) -> Option<String>;
}

/// The first requirement that does not hold, in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unmet {
    #[error("user {user} no longer has access to grain {grain} (removed, suspended, or the grain is gone): ask someone who can to grant it again")]
    NoAccess { user: String, grain: String },
    #[error("user {user} no longer holds the permissions {missing:?} on grain {grain}: ask the grain's owner to share them again")]
    MissingPermissions { user: String, grain: String, missing: Vec<usize> },
    #[error("user {user} is no longer an administrator: ask an administrator to grant it again")]
    NotAdmin { user: String },
    #[error("API token {token} was revoked: create a new token and grant it again")]
    TokenRevoked { token: String },
    #[error("user {user} no longer has the verified mail address {address}: they must verify it again and grant it again")]
    AddressLost { user: String, address: String },
}

/// `Ok` when every requirement holds; otherwise the first that does not.
pub fn check(reqs: &[Requirement], world: &dyn World) -> Result<(), Unmet> {
    for req in reqs {
        match req {
            Requirement::UserHasPermissions { user, grain, permissions } => {
                let Some(held) = world.user_permissions(user, grain) else {
                    return Err(Unmet::NoAccess { user: user.clone(), grain: grain.clone() });
                };
                let missing: Vec<usize> = permissions
                    .iter()
                    .enumerate()
                    .filter(|(i, needed)| **needed && !held.get(*i).copied().unwrap_or(false))
                    .map(|(i, _)| i)
                    .collect();
                if !missing.is_empty() {
                    return Err(Unmet::MissingPermissions { user: user.clone(), grain: grain.clone(), missing });
                }
            }
            Requirement::UserIsAdmin { user } => {
                if !world.user_is_admin(user) {
                    return Err(Unmet::NotAdmin { user: user.clone() });
                }
            }
            Requirement::TokenValid { token } => {
                if !world.token_valid(token) {
                    return Err(Unmet::TokenRevoked { token: token.clone() });
                }
            }
            Requirement::UserOwnsAddress { user, address } => {
                if !world.verified_address(user).is_some_and(|a| a.eq_ignore_ascii_case(address)) {
                    return Err(Unmet::AddressLost { user: user.clone(), address: address.clone() });
                }
            }
        }
    }
    Ok(())
}

/// A [`World`] held in memory, for tests here and in other crates.
#[derive(Clone, Debug, Default)]
pub struct FakeWorld {
    /// (user, grain) → permissions.
    pub permissions: std::collections::HashMap<(String, String), Vec<bool>>,
    pub admins: std::collections::HashSet<String>,
    pub tokens: std::collections::HashSet<String>,
    /// user → verified address.
    pub addresses: std::collections::HashMap<String, String>,
}

impl World for FakeWorld {
    fn user_permissions(&self, user: &str, grain: &str) -> Option<Vec<bool>> {
        self.permissions.get(&(user.to_owned(), grain.to_owned())).cloned()
    }
    fn user_is_admin(&self, user: &str) -> bool {
        self.admins.contains(user)
    }
    fn token_valid(&self, token: &str) -> bool {
        self.tokens.contains(token)
    }
    fn verified_address(&self, user: &str) -> Option<String> {
        self.addresses.get(user).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(user: &str, grain: &str, p: &[bool]) -> Requirement {
        Requirement::UserHasPermissions { user: user.into(), grain: grain.into(), permissions: p.to_vec() }
    }

    fn world() -> FakeWorld {
        let mut w = FakeWorld::default();
        w.permissions.insert(("ada".into(), "g1".into()), vec![true, false, true]);
        w.admins.insert("root".into());
        w.tokens.insert("t1".into());
        w
    }

    #[test]
    fn permissions_hold_for_a_superset_and_fail_for_a_missing_one() {
        let w = world();
        assert_eq!(check(&[perms("ada", "g1", &[true, false, true])], &w), Ok(()));
        assert_eq!(check(&[perms("ada", "g1", &[true])], &w), Ok(()), "held is a superset");
        assert_eq!(check(&[perms("ada", "g1", &[])], &w), Ok(()), "no permission needed, access is");
        assert_eq!(
            check(&[perms("ada", "g1", &[true, true])], &w),
            Err(Unmet::MissingPermissions { user: "ada".into(), grain: "g1".into(), missing: vec![1] })
        );
        assert_eq!(
            check(&[perms("ada", "g1", &[false, false, false, true])], &w),
            Err(Unmet::MissingPermissions { user: "ada".into(), grain: "g1".into(), missing: vec![3] }),
            "beyond what is held counts as missing"
        );
        let e = check(&[perms("bob", "g1", &[])], &w).unwrap_err();
        assert_eq!(e, Unmet::NoAccess { user: "bob".into(), grain: "g1".into() });
        assert!(e.to_string().contains("no longer has access"), "{e}");
    }

    #[test]
    fn an_address_requirement_holds_only_while_the_user_has_that_verified_address() {
        let mut w = world();
        let req = Requirement::UserOwnsAddress { user: "ada".into(), address: "ada@example.org".into() };
        let lost = Err(Unmet::AddressLost { user: "ada".into(), address: "ada@example.org".into() });
        assert_eq!(check(std::slice::from_ref(&req), &w), lost, "no verified address");
        w.addresses.insert("ada".into(), "Ada@Example.org".into());
        assert_eq!(check(std::slice::from_ref(&req), &w), Ok(()), "addresses compare case-insensitively");
        w.addresses.insert("ada".into(), "ada@elsewhere.org".into());
        let e = check(&[req], &w);
        assert_eq!(e, lost, "another address");
        assert!(e.unwrap_err().to_string().contains("verify it again"));
    }

    #[test]
    fn admin_and_token_requirements() {
        let w = world();
        assert_eq!(check(&[Requirement::UserIsAdmin { user: "root".into() }], &w), Ok(()));
        assert_eq!(
            check(&[Requirement::UserIsAdmin { user: "ada".into() }], &w),
            Err(Unmet::NotAdmin { user: "ada".into() })
        );
        assert_eq!(check(&[Requirement::TokenValid { token: "t1".into() }], &w), Ok(()));
        let e = check(&[Requirement::TokenValid { token: "t2".into() }], &w).unwrap_err();
        assert!(e.to_string().contains("API token t2 was revoked"), "{e}");
    }

    #[test]
    fn all_must_hold_and_the_first_failure_is_named() {
        let w = world();
        assert_eq!(check(&[], &w), Ok(()));
        let reqs = [
            perms("ada", "g1", &[true]),
            Requirement::UserIsAdmin { user: "root".into() },
            Requirement::TokenValid { token: "gone".into() },
            Requirement::UserIsAdmin { user: "ada".into() },
        ];
        assert_eq!(check(&reqs, &w), Err(Unmet::TokenRevoked { token: "gone".into() }));
        assert_eq!(check(&reqs[..2], &w), Ok(()));
    }
}
