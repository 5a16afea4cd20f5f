//! The one place where access is decided.
//!
//! Every handler builds a [`Principal`] (who), an [`Action`] (what) and a [`Resource`]
//! (which camera, which time, why) and asks [`authorize`]. Nothing else in the crate
//! answers "may this person see this": keeping the rule in one pure function is what
//! lets a table test prove the DESIGN.md roles table, and what keeps a new endpoint
//! from inventing its own, weaker rule. Everything not explicitly allowed is denied.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Police,
    It,
    Contractor,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Police, Role::It, Role::Contractor, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Police => "police",
            Role::It => "it",
            Role::Contractor => "contractor",
            Role::Auditor => "auditor",
        }
    }

    /// Whether a camera list may limit this role (police and contractors).
    pub fn scoped(self) -> bool {
        matches!(self, Role::Police | Role::Contractor)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "police" => Ok(Role::Police),
            "it" => Ok(Role::It),
            "contractor" => Ok(Role::Contractor),
            "auditor" => Ok(Role::Auditor),
            _ => Err(format!(
                "unknown role {s:?}: use police, it, contractor or auditor"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A time-limited permission given by `it` to a contractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: i64,
    /// The contractor's user id.
    pub user_id: i64,
    pub cameras: Vec<String>,
    /// Validity window `[from, until)`, unix ms.
    pub from_ms: i64,
    pub until_ms: i64,
    pub live: bool,
    pub playback: bool,
    /// Media range that playback may cover; `None` = the grant's own window.
    pub playback_from_ms: Option<i64>,
    pub playback_to_ms: Option<i64>,
    pub ticket: String,
    pub granted_by: String,
    pub revoked: bool,
}

impl Grant {
    pub fn active(&self, now_ms: i64) -> bool {
        !self.revoked && self.from_ms <= now_ms && now_ms < self.until_ms
    }

    fn covers(&self, p: &Principal, camera: &str, now_ms: i64) -> bool {
        self.user_id == p.user_id && self.active(now_ms) && self.cameras.iter().any(|c| c == camera)
    }

    fn playback_range(&self) -> (i64, i64) {
        (
            self.playback_from_ms.unwrap_or(self.from_ms),
            self.playback_to_ms.unwrap_or(self.until_ms),
        )
    }
}

/// The authenticated caller, with everything the policy needs about them.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    /// Camera limit of police and contractors; `None` = no limit.
    pub cameras: Option<Vec<String>>,
    /// The caller's grants (contractors); inactive ones are ignored by the policy.
    pub grants: Vec<Grant>,
}

impl Principal {
    /// Where the footage this principal may play of `camera` from `at_ms` ends, when a
    /// grant limits it (contractors): the end of the furthest-reaching active playback
    /// grant whose range holds `at_ms`. `None`: no grant limit (other roles), or no grant
    /// holds `at_ms` (then [`authorize`] refuses). Lets a viewing be cut to what may be
    /// seen instead of refused whole; [`authorize`] still decides.
    pub fn playback_limit(&self, camera: &str, at_ms: i64, now_ms: i64) -> Option<i64> {
        if self.role != Role::Contractor {
            return None;
        }
        self.grants
            .iter()
            .filter(|g| g.playback && g.covers(self, camera, now_ms))
            .map(|g| g.playback_range())
            .filter(|(from, to)| *from <= at_ms && at_ms < *to)
            .map(|(_, to)| to)
            .max()
    }

    /// The media time ranges of `camera` this principal may see recorded, when grants
    /// limit them (contractors): the playback ranges of their active grants. `None`: no
    /// grant limit (other roles). The camera's timeline is cut to them, so a contractor
    /// does not learn when recording ran outside their grant.
    pub fn visible_ranges(&self, camera: &str, now_ms: i64) -> Option<Vec<(i64, i64)>> {
        (self.role == Role::Contractor).then(|| {
            self.grants
                .iter()
                .filter(|g| g.playback && g.covers(self, camera, now_ms))
                .map(|g| g.playback_range())
                .collect()
        })
    }

    fn in_scope(&self, camera: &str) -> bool {
        self.cameras
            .as_ref()
            .is_none_or(|list| list.iter().any(|c| c == camera))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See that a camera exists and its state (camera list; system health).
    ViewCamera,
    /// See the recorded spans and gaps of a camera.
    ViewRecordings,
    Live,
    Playback,
    Export,
    HoldCreate,
    HoldRelease,
    HoldList,
    ManageGrants,
    SystemHealth,
    /// Read access-log entries (`Resource::owner`: whose entries; `None` = everyone's).
    ReadAudit,
    SubjectAccess,
    /// Read the deletion journal (what retention deleted, when and why; no images).
    ReadJournal,
    /// Acknowledge the latched alarm of the case-open switch (after looking at the box).
    AcknowledgeTamper,
}

impl Action {
    pub const ALL: [Action; 14] = [
        Action::ViewCamera,
        Action::ViewRecordings,
        Action::Live,
        Action::Playback,
        Action::Export,
        Action::HoldCreate,
        Action::HoldRelease,
        Action::HoldList,
        Action::ManageGrants,
        Action::SystemHealth,
        Action::ReadAudit,
        Action::SubjectAccess,
        Action::ReadJournal,
        Action::AcknowledgeTamper,
    ];

    /// The name written to the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ViewCamera => "camera.view",
            Action::ViewRecordings => "recordings",
            Action::Live => "live",
            Action::Playback => "playback",
            Action::Export => "export",
            Action::HoldCreate => "hold.create",
            Action::HoldRelease => "hold.release",
            Action::HoldList => "hold.list",
            Action::ManageGrants => "grant.manage",
            Action::SystemHealth => "health",
            Action::ReadAudit => "audit.read",
            Action::SubjectAccess => "audit.subject-access",
            Action::ReadJournal => "journal.read",
            Action::AcknowledgeTamper => "tamper.acknowledge",
        }
    }

    /// Actions that show images: they need a reason and are always logged.
    pub fn is_footage(self) -> bool {
        matches!(self, Action::Live | Action::Playback | Action::Export)
    }
}

/// What the action is about. Fields that do not apply stay `None`.
#[derive(Debug, Clone, Default)]
pub struct Resource<'a> {
    pub camera: Option<&'a str>,
    /// Media time range, unix ms (playback, export).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Case reference (police).
    pub case: Option<&'a str>,
    /// Purpose (everyone else).
    pub purpose: Option<&'a str>,
    /// Owner of the thing acted on: a hold's owner, or whose log entries are read.
    pub owner: Option<&'a str>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
    /// The outcome as written to the access log: `allowed` or `denied: <why>`.
    pub fn outcome(&self) -> String {
        match self {
            Decision::Allow => "allowed".into(),
            Decision::Deny(why) => format!("denied: {why}"),
        }
    }
}

fn deny(why: impl Into<String>) -> Decision {
    Decision::Deny(why.into())
}

fn given(s: Option<&str>) -> bool {
    s.is_some_and(|s| !s.trim().is_empty())
}

/// Decides one request. Pure: same inputs, same answer; no I/O.
pub fn authorize(p: &Principal, action: Action, r: &Resource<'_>) -> Decision {
    use Action::*;
    use Role::*;

    // A footage action needs its reason, of the kind the role gives.
    if action.is_footage() {
        match p.role {
            Police if !given(r.case) => return deny("a case reference (case) is required"),
            It | Contractor if !given(r.purpose) => return deny("a purpose is required"),
            _ => {}
        }
    }
    // Camera-bound actions need a camera, and scoped roles must have it in scope.
    let camera_bound = matches!(
        action,
        ViewCamera | ViewRecordings | Live | Playback | Export
    );
    if camera_bound && r.camera.is_none() {
        return deny("no camera named");
    }
    if let Some(cam) = r.camera
        && p.role.scoped()
        && !p.in_scope(cam)
    {
        return deny(format!("camera {cam} is outside the user's scope"));
    }
    if matches!(action, Playback | Export) {
        match (r.from_ms, r.to_ms) {
            (Some(f), Some(t)) if f < t => {}
            _ => return deny("a valid time range is required"),
        }
    }

    match (p.role, action) {
        // --- police: scoped cameras, always with a case reference
        (Police, ViewCamera | ViewRecordings | Live | Playback | Export) => Decision::Allow,
        (Police, HoldCreate) => {
            if given(r.case) {
                Decision::Allow
            } else {
                deny("a case reference (case) is required")
            }
        }
        (Police, HoldRelease) => {
            if r.owner == Some(p.name.as_str()) {
                Decision::Allow
            } else {
                deny("police may release only their own holds")
            }
        }
        (Police, HoldList | SystemHealth) => Decision::Allow,
        (Police, ReadAudit) => {
            if r.owner == Some(p.name.as_str()) {
                Decision::Allow
            } else {
                deny("police may read only their own access-log entries")
            }
        }

        // --- it: administers, may look with a purpose, may not export
        (It, ViewCamera | ViewRecordings | Live | Playback) => Decision::Allow,
        (It, HoldList | ManageGrants | SystemHealth | AcknowledgeTamper) => Decision::Allow,
        (It, ReadAudit | ReadJournal) => Decision::Allow,

        // --- contractor: only what an active grant says
        (Contractor, ViewCamera | SystemHealth) => match r.camera {
            Some(cam) if p.grants.iter().any(|g| g.covers(p, cam, r.now_ms)) => Decision::Allow,
            Some(cam) => deny(format!("no active grant for camera {cam}")),
            None => deny("contractors see only the cameras of an active grant"),
        },
        (Contractor, Live) => {
            let cam = r.camera.unwrap_or_default();
            if p.grants
                .iter()
                .any(|g| g.covers(p, cam, r.now_ms) && g.live)
            {
                Decision::Allow
            } else {
                deny(format!("no active grant for live view of camera {cam}"))
            }
        }
        (Contractor, ViewRecordings | Playback) => {
            let cam = r.camera.unwrap_or_default();
            let mut any = false;
            for g in p
                .grants
                .iter()
                .filter(|g| g.covers(p, cam, r.now_ms) && g.playback)
            {
                any = true;
                if action == ViewRecordings {
                    return Decision::Allow;
                }
                let (gf, gt) = g.playback_range();
                if let (Some(f), Some(t)) = (r.from_ms, r.to_ms)
                    && gf <= f
                    && t <= gt
                {
                    return Decision::Allow;
                }
            }
            if any {
                deny(format!(
                    "the time range is outside the grant for camera {cam}"
                ))
            } else {
                deny(format!("no active grant for playback of camera {cam}"))
            }
        }

        // --- auditor: the log, health, and the camera list that health implies
        (
            Auditor,
            ViewCamera | HoldList | SystemHealth | ReadAudit | SubjectAccess | ReadJournal,
        ) => Decision::Allow,

        (role, action) => deny(format!("role {role} may not {}", action.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const H: i64 = 3_600_000;

    fn grant(user_id: i64, live: bool, playback: bool) -> Grant {
        Grant {
            id: 1,
            user_id,
            cameras: vec!["gate".into()],
            from_ms: NOW - H,
            until_ms: NOW + H,
            live,
            playback,
            playback_from_ms: Some(NOW - 10 * H),
            playback_to_ms: Some(NOW - 5 * H),
            ticket: "CHG-1".into(),
            granted_by: "ivan".into(),
            revoked: false,
        }
    }

    fn principal(role: Role, scope: Option<&[&str]>, grants: Vec<Grant>) -> Principal {
        Principal {
            user_id: 7,
            name: "me".into(),
            role,
            cameras: scope.map(|s| s.iter().map(|c| c.to_string()).collect()),
            grants,
        }
    }

    /// The caller situations the table is evaluated in.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Who {
        Unscoped,
        ScopedIn,
        ScopedOut,
        GrantBoth,
        GrantLiveOnly,
        GrantExpired,
        GrantRevoked,
        GrantOtherUser,
        NoGrant,
    }

    fn make(role: Role, who: Who) -> Principal {
        let both = grant(7, true, true);
        match who {
            Who::Unscoped => principal(role, None, vec![]),
            Who::ScopedIn => principal(role, Some(&["gate", "hall"]), vec![both]),
            Who::ScopedOut => principal(role, Some(&["hall"]), vec![both]),
            Who::GrantBoth => principal(role, None, vec![both]),
            Who::GrantLiveOnly => principal(role, None, vec![grant(7, true, false)]),
            Who::GrantExpired => principal(
                role,
                None,
                vec![Grant {
                    until_ms: NOW,
                    ..both
                }],
            ),
            Who::GrantRevoked => principal(
                role,
                None,
                vec![Grant {
                    revoked: true,
                    ..both
                }],
            ),
            Who::GrantOtherUser => principal(role, None, vec![grant(8, true, true)]),
            Who::NoGrant => principal(role, None, vec![]),
        }
    }

    fn resource(action: Action, reason: bool, inside_range: bool) -> Resource<'static> {
        let (from, to) = if inside_range {
            (NOW - 9 * H, NOW - 8 * H)
        } else {
            (NOW - 2 * H, NOW - H)
        };
        let camera_bound = matches!(
            action,
            Action::ViewCamera
                | Action::ViewRecordings
                | Action::Live
                | Action::Playback
                | Action::Export
                | Action::SystemHealth
        );
        Resource {
            camera: camera_bound.then_some("gate"),
            from_ms: Some(from),
            to_ms: Some(to),
            case: reason.then_some("CASE-42"),
            purpose: reason.then_some("maintenance"),
            owner: Some("me"),
            now_ms: NOW,
        }
    }

    /// DESIGN.md roles table, as (role, action) → which situations allow it (all others
    /// deny). Situations: in/out of scope for scoped roles, grants for contractors.
    fn expected(role: Role, action: Action, who: Who, reason: bool, inside: bool) -> bool {
        use Action::*;
        use Who::*;
        let footage = action.is_footage();
        if footage && !reason {
            return false;
        }
        match role {
            Role::Police => {
                let in_scope = !matches!(who, ScopedOut);
                match action {
                    ViewCamera | ViewRecordings | Live | Playback | Export | SystemHealth => {
                        in_scope
                    }
                    HoldCreate | HoldRelease | HoldList | ReadAudit => {
                        action != HoldCreate || reason
                    }
                    ManageGrants | SubjectAccess | ReadJournal | AcknowledgeTamper => false,
                }
            }
            Role::It => match action {
                ViewCamera | ViewRecordings | Live | Playback => true,
                Export | HoldCreate | HoldRelease | SubjectAccess => false,
                HoldList | ManageGrants | SystemHealth | ReadAudit | ReadJournal
                | AcknowledgeTamper => true,
            },
            Role::Contractor => {
                // ScopedOut holds a grant for a camera outside its own scope: no.
                let active = matches!(who, ScopedIn | GrantBoth | GrantLiveOnly);
                let playback = matches!(who, ScopedIn | GrantBoth);
                match action {
                    ViewCamera | SystemHealth | Live => active,
                    ViewRecordings => playback,
                    Playback => playback && inside,
                    _ => false,
                }
            }
            Role::Auditor => matches!(
                action,
                ViewCamera | HoldList | SystemHealth | ReadAudit | SubjectAccess | ReadJournal
            ),
        }
    }

    #[test]
    fn roles_table() {
        let whos = [
            Who::Unscoped,
            Who::ScopedIn,
            Who::ScopedOut,
            Who::GrantBoth,
            Who::GrantLiveOnly,
            Who::GrantExpired,
            Who::GrantRevoked,
            Who::GrantOtherUser,
            Who::NoGrant,
        ];
        let mut checked = 0;
        let mut allowed = 0;
        for role in Role::ALL {
            for action in Action::ALL {
                for who in whos {
                    for reason in [true, false] {
                        for inside in [true, false] {
                            let p = make(role, who);
                            let mut r = resource(action, reason, inside);
                            let got = authorize(&p, action, &r);
                            let want = expected(role, action, who, reason, inside);
                            assert_eq!(
                                got.is_allowed(),
                                want,
                                "{role} {action:?} {who:?} reason={reason} inside={inside}: {got:?}"
                            );
                            if let Decision::Deny(why) = &got {
                                assert!(!why.is_empty());
                            }
                            checked += 1;
                            allowed += got.is_allowed() as usize;
                            // other owners: police may not read others' log or release others' holds
                            r.owner = Some("someone-else");
                            if role == Role::Police
                                && matches!(action, Action::ReadAudit | Action::HoldRelease)
                            {
                                assert!(!authorize(&p, action, &r).is_allowed());
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 4 * Action::ALL.len() * 9 * 4);
        assert!(allowed > 100, "{allowed}");
    }

    #[test]
    fn global_health_is_not_for_contractors() {
        let r = Resource {
            now_ms: NOW,
            ..Default::default()
        };
        for (role, want) in [
            (Role::Police, true),
            (Role::It, true),
            (Role::Contractor, false),
            (Role::Auditor, true),
        ] {
            let p = make(role, Who::GrantBoth);
            assert_eq!(
                authorize(&p, Action::SystemHealth, &r).is_allowed(),
                want,
                "{role}"
            );
        }
    }

    #[test]
    fn reasons_of_the_wrong_kind_do_not_count() {
        let police = make(Role::Police, Who::Unscoped);
        let it = make(Role::It, Who::Unscoped);
        let mut r = resource(Action::Playback, true, true);
        r.case = None;
        assert!(!authorize(&police, Action::Playback, &r).is_allowed());
        assert!(authorize(&it, Action::Playback, &r).is_allowed());
        r.case = Some("CASE-1");
        r.purpose = Some("   ");
        assert!(authorize(&police, Action::Playback, &r).is_allowed());
        assert!(!authorize(&it, Action::Playback, &r).is_allowed());
    }

    #[test]
    fn playback_needs_a_forward_range() {
        let it = make(Role::It, Who::Unscoped);
        let mut r = resource(Action::Playback, true, true);
        r.from_ms = r.to_ms;
        assert!(!authorize(&it, Action::Playback, &r).is_allowed());
        r.from_ms = None;
        assert!(!authorize(&it, Action::Playback, &r).is_allowed());
    }

    #[test]
    fn grant_window_edges() {
        let mut p = make(Role::Contractor, Who::GrantBoth);
        let r = |now| Resource {
            now_ms: now,
            ..resource(Action::Live, true, true)
        };
        assert!(authorize(&p, Action::Live, &r(NOW - H)).is_allowed());
        assert!(!authorize(&p, Action::Live, &r(NOW - H - 1)).is_allowed());
        assert!(!authorize(&p, Action::Live, &r(NOW + H)).is_allowed());
        p.grants[0].cameras = vec!["hall".into()];
        assert!(!authorize(&p, Action::Live, &r(NOW)).is_allowed());
    }
}
