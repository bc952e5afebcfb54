//! [`Ledger`]: everything the rest of wardseal does with the contracts, over any
//! [`Backend`].
//!
//! Calls are encoded with the `sol!` bindings, reverts decoded into [`ContractError`],
//! events into [`LedgerEvent`]. Every transaction is sent from the backend's account;
//! [`Ledger::with_signer`] gives the same suite seen from another account.

use alloy::primitives::{Address, B256, Bytes, FixedBytes};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolConstructor, SolEventInterface, SolInterface};

use crate::backend::{Backend, LogEntry, SentTx, TxRequest};
use crate::bindings::{
    AuditAnchor, AuthorityRegistry, Consent, DeviceRegistry, RangeRule, RuleManager,
};
use crate::error::{ContractError, Error};
use crate::evaluator::RuleBook;
use crate::model::{
    Alarm, AlarmLimit, Anchor, AnchorRecord, CheckInput, Decision, Device, EventPosition,
    LedgerEvent, LimitSource, PatientKey, PatientLimits, PositionedEvent, Priority, Range, Role,
    Rule, Suite, Trigger, TxOutcome, TypeRule, Verdict, WideDecimal,
};

/// The wardseal contract suite on one chain, seen from one account.
#[derive(Debug, Clone)]
pub struct Ledger<B> {
    backend: B,
    suite: Suite,
}

fn unexpected(what: &'static str) -> impl FnOnce(alloy::sol_types::Error) -> Error {
    move |_| Error::UnexpectedAnswer { what }
}

impl<B: Backend> Ledger<B> {
    /// Deploys a new suite from the backend's account, which becomes the admin of every
    /// contract (default admin, rule admin, registrar, authority registrar; anchorers are
    /// granted separately).
    pub async fn deploy(backend: B) -> Result<Self, Error> {
        let admin = backend.account();
        let rule_manager = deploy(
            &backend,
            &RuleManager::BYTECODE,
            RuleManager::constructorCall { admin }.abi_encode(),
        )
        .await?;
        let device_registry = deploy(
            &backend,
            &DeviceRegistry::BYTECODE,
            DeviceRegistry::constructorCall { admin }.abi_encode(),
        )
        .await?;
        let consent = deploy(&backend, &Consent::BYTECODE, Vec::new()).await?;
        let audit_anchor = deploy(
            &backend,
            &AuditAnchor::BYTECODE,
            AuditAnchor::constructorCall { admin }.abi_encode(),
        )
        .await?;
        let authority_registry = deploy(
            &backend,
            &AuthorityRegistry::BYTECODE,
            AuthorityRegistry::constructorCall { admin }.abi_encode(),
        )
        .await?;
        let suite = Suite {
            rule_manager: rule_manager.0,
            device_registry: device_registry.0,
            consent: consent.0,
            audit_anchor: audit_anchor.0,
            authority_registry: authority_registry.0,
            deployed_at: rule_manager.1,
        };
        Ok(Self { backend, suite })
    }

    /// The suite at `suite`'s addresses.
    pub fn new(backend: B, suite: Suite) -> Self {
        Self { backend, suite }
    }

    /// The same suite, sending from `signer`'s account.
    pub fn with_signer(&self, signer: PrivateKeySigner) -> Self {
        Self {
            backend: self.backend.with_signer(signer),
            suite: self.suite,
        }
    }

    /// The suite's addresses.
    pub fn suite(&self) -> &Suite {
        &self.suite
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The account transactions are sent from.
    pub fn account(&self) -> Address {
        self.backend.account()
    }

    /// The latest block number.
    pub async fn head(&self) -> Result<u64, Error> {
        self.backend.head().await
    }

    pub(crate) async fn send<C: SolCall>(&self, to: Address, call: C) -> Result<SentTx, Error> {
        self.backend
            .send(TxRequest {
                to: Some(to),
                input: call.abi_encode().into(),
            })
            .await
            .map_err(decode_revert)
    }

    pub(crate) async fn read<C: SolCall>(
        &self,
        to: Address,
        call: C,
        what: &'static str,
    ) -> Result<C::Return, Error> {
        let output = self
            .backend
            .call(to, call.abi_encode().into())
            .await
            .map_err(decode_revert)?;
        C::abi_decode_returns(&output).map_err(unexpected(what))
    }

    /// Reads a count the contract keeps as a `uint256`; one past `u64` is an unexpected
    /// answer rather than a silent truncation.
    pub(crate) async fn read_count<C: SolCall<Return = alloy::primitives::U256>>(
        &self,
        to: Address,
        call: C,
        what: &'static str,
    ) -> Result<u64, Error> {
        let count = self.read(to, call, what).await?;
        u64::try_from(count).map_err(|_| Error::UnexpectedAnswer { what })
    }

    // ----- roles -----

    fn role_contract(&self, role: Role) -> Address {
        match role {
            Role::RuleAdmin => self.suite.rule_manager,
            Role::Registrar => self.suite.device_registry,
            Role::Anchorer => self.suite.audit_anchor,
            Role::AuthorityRegistrar => self.suite.authority_registry,
        }
    }

    /// Gives `account` `role` (needs the default admin role of the contract holding it).
    pub async fn grant_role(&self, role: Role, account: Address) -> Result<TxOutcome, Error> {
        let call = RuleManager::grantRoleCall {
            role: role.id(),
            account,
        };
        Ok(self.send(self.role_contract(role), call).await?.outcome)
    }

    /// Takes `role` from `account`.
    pub async fn revoke_role(&self, role: Role, account: Address) -> Result<TxOutcome, Error> {
        let call = RuleManager::revokeRoleCall {
            role: role.id(),
            account,
        };
        Ok(self.send(self.role_contract(role), call).await?.outcome)
    }

    /// Whether `account` has `role`.
    pub async fn has_role(&self, role: Role, account: Address) -> Result<bool, Error> {
        let call = RuleManager::hasRoleCall {
            role: role.id(),
            account,
        };
        self.read(self.role_contract(role), call, "hasRole").await
    }

    // ----- rules -----

    /// Deploys a range rule contract for `rule_id` and registers it (rule admins only).
    pub async fn create_rule(&self, rule_id: u32) -> Result<Address, Error> {
        let constructor = RangeRule::constructorCall {
            manager_: self.suite.rule_manager,
            ruleId_: rule_id,
        };
        let (address, _) = deploy(
            &self.backend,
            &RangeRule::BYTECODE,
            constructor.abi_encode(),
        )
        .await?;
        self.send(
            self.suite.rule_manager,
            RuleManager::registerRuleCall {
                ruleId: rule_id,
                rule: address,
            },
        )
        .await?;
        Ok(address)
    }

    /// Makes group `group` follow rule `rule_id`.
    pub async fn set_group_rule(&self, group: u32, rule_id: u32) -> Result<TxOutcome, Error> {
        let call = RuleManager::setGroupRuleCall {
            group,
            ruleId: rule_id,
        };
        Ok(self.send(self.suite.rule_manager, call).await?.outcome)
    }

    /// Sets what rule `rule_id` allows for `rule.data_type`.
    pub async fn set_type_rule(&self, rule_id: u32, rule: &TypeRule) -> Result<TxOutcome, Error> {
        let call = RuleManager::setTypeRuleCall {
            ruleId: rule_id,
            dataType: rule.data_type,
            unit: rule.unit.clone(),
            ranges: rule.ranges.iter().map(|r| to_manager_range(*r)).collect(),
            alarms: rule.alarms.iter().map(to_manager_limit).collect(),
            maxPerMinute: rule.max_per_minute,
        };
        Ok(self.send(self.suite.rule_manager, call).await?.outcome)
    }

    /// Stops rule `rule_id` from allowing `data_type`.
    pub async fn remove_type_rule(&self, rule_id: u32, data_type: u16) -> Result<TxOutcome, Error> {
        let call = RuleManager::removeTypeRuleCall {
            ruleId: rule_id,
            dataType: data_type,
        };
        Ok(self.send(self.suite.rule_manager, call).await?.outcome)
    }

    /// The rule group `group` follows, if any.
    pub async fn group_rule(&self, group: u32) -> Result<Option<u32>, Error> {
        let answer = self
            .read(
                self.suite.rule_manager,
                RuleManager::groupRuleCall { group },
                "groupRule",
            )
            .await?;
        Ok(answer.set.then_some(answer.ruleId))
    }

    /// Every group with a rule, as (group, rule id).
    pub async fn group_rules(&self) -> Result<Vec<(u32, u32)>, Error> {
        let groups = self
            .read(
                self.suite.rule_manager,
                RuleManager::groupsCall {},
                "groups",
            )
            .await?;
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            if let Some(rule) = self.group_rule(group).await? {
                out.push((group, rule));
            }
        }
        Ok(out)
    }

    /// Rule `rule_id` with everything it allows, if registered.
    pub async fn rule(&self, rule_id: u32) -> Result<Option<Rule>, Error> {
        let address = self
            .read(
                self.suite.rule_manager,
                RuleManager::ruleAddressCall { ruleId: rule_id },
                "ruleAddress",
            )
            .await?;
        if address == Address::ZERO {
            return Ok(None);
        }
        let mut data_types = self
            .read(address, RangeRule::dataTypesCall {}, "dataTypes")
            .await?;
        data_types.sort_unstable();
        let mut types = Vec::with_capacity(data_types.len());
        for data_type in data_types {
            let answer = self
                .read(
                    address,
                    RangeRule::typeRuleCall {
                        dataType: data_type,
                    },
                    "typeRule",
                )
                .await?;
            if !answer.allowed {
                continue;
            }
            types.push(TypeRule {
                data_type,
                unit: answer.unit,
                ranges: answer.ranges.into_iter().map(from_rule_range).collect(),
                alarms: answer
                    .alarms
                    .into_iter()
                    .map(|l| {
                        from_limit(
                            l.component,
                            l.trigger,
                            l.priority,
                            l.bound.mantissa,
                            l.bound.scale,
                        )
                    })
                    .collect::<Result<_, _>>()?,
                max_per_minute: answer.maxPerMinute,
            });
        }
        Ok(Some(Rule {
            rule_id,
            address,
            types,
        }))
    }

    /// Every registered rule.
    pub async fn rules(&self) -> Result<Vec<Rule>, Error> {
        let ids = self
            .read(
                self.suite.rule_manager,
                RuleManager::ruleIdsCall {},
                "ruleIds",
            )
            .await?;
        let mut rules = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(rule) = self.rule(id).await? {
                rules.push(rule);
            }
        }
        Ok(rules)
    }

    /// The replica a collector starts from: every rule, every group's rule and every
    /// patient's own alarm limits, as the chain holds them now.
    pub async fn rule_book(&self) -> Result<RuleBook, Error> {
        let rules = self.rules().await?;
        let groups = self.group_rules().await?;
        let patients = self.all_patient_limits().await?;
        Ok(RuleBook::from_parts(&rules, &groups).with_patient_limits(patients))
    }

    /// The contract's decision for a reading (a read-only call, no transaction).
    pub async fn check(&self, input: &CheckInput) -> Result<Decision, Error> {
        let answer = self
            .read(self.suite.rule_manager, check_call(input), "check")
            .await?;
        let verdict = Verdict::from_code(answer.verdict).ok_or(Error::UnexpectedAnswer {
            what: "check verdict",
        })?;
        if verdict != Verdict::Allowed {
            return Ok(Decision::Refused {
                verdict,
                component: answer.component,
            });
        }
        let a = answer.alarm;
        let alarm = if a.priority == 0 {
            None
        } else {
            let limit = from_manager_limit(a)?;
            let source = if answer.ownLimits {
                LimitSource::Patient
            } else {
                LimitSource::Rule
            };
            Some(Alarm { limit, source })
        };
        Ok(Decision::Accepted { alarm })
    }

    // ----- patients' alarm limits -----

    /// Makes `clinician` responsible (or no longer) for `patient`, so they may set the
    /// patient's alarm limits (rule admins only).
    pub async fn set_responsible_clinician(
        &self,
        patient: PatientKey,
        clinician: Address,
        responsible: bool,
    ) -> Result<TxOutcome, Error> {
        let call = RuleManager::setResponsibleClinicianCall {
            patient: patient.0,
            clinician,
            responsible,
        };
        Ok(self.send(self.suite.rule_manager, call).await?.outcome)
    }

    /// Whether `clinician` is responsible for `patient`.
    pub async fn is_responsible(
        &self,
        patient: PatientKey,
        clinician: Address,
    ) -> Result<bool, Error> {
        let call = RuleManager::isResponsibleCall {
            patient: patient.0,
            clinician,
        };
        self.read(self.suite.rule_manager, call, "isResponsible")
            .await
    }

    /// Sets a patient's own alarm limits for a data type (rule admins and the patient's
    /// responsible clinicians only); recorded on chain as a `PatientLimitsSet` event.
    pub async fn set_patient_limits(&self, limits: &PatientLimits) -> Result<TxOutcome, Error> {
        let call = RuleManager::setPatientLimitsCall {
            patient: limits.patient.0,
            dataType: limits.data_type,
            limits: limits.limits.iter().map(to_manager_limit).collect(),
        };
        Ok(self.send(self.suite.rule_manager, call).await?.outcome)
    }

    /// Gives a patient the rule's alarm limits for `data_type` again.
    pub async fn clear_patient_limits(
        &self,
        patient: PatientKey,
        data_type: u16,
    ) -> Result<TxOutcome, Error> {
        let call = RuleManager::clearPatientLimitsCall {
            patient: patient.0,
            dataType: data_type,
        };
        Ok(self.send(self.suite.rule_manager, call).await?.outcome)
    }

    /// A patient's own alarm limits for `data_type`, if set.
    pub async fn patient_limits(
        &self,
        patient: PatientKey,
        data_type: u16,
    ) -> Result<Option<PatientLimits>, Error> {
        let answer = self
            .read(
                self.suite.rule_manager,
                RuleManager::patientLimitsCall {
                    patient: patient.0,
                    dataType: data_type,
                },
                "patientLimits",
            )
            .await?;
        if !answer.set {
            return Ok(None);
        }
        Ok(Some(PatientLimits {
            patient,
            data_type,
            limits: from_manager_limits(answer.limits)?,
        }))
    }

    /// Every patient's own alarm limits now set.
    pub async fn all_patient_limits(&self) -> Result<Vec<PatientLimits>, Error> {
        let count = self
            .read_count(
                self.suite.rule_manager,
                RuleManager::overriddenCountCall {},
                "overriddenCount",
            )
            .await?;
        let mut out = Vec::new();
        for index in 0..count {
            let key = self
                .read(
                    self.suite.rule_manager,
                    RuleManager::overriddenAtCall {
                        index: alloy::primitives::U256::from(index),
                    },
                    "overriddenAt",
                )
                .await?;
            if let Some(limits) = self
                .patient_limits(PatientKey(key.patient), key.dataType)
                .await?
            {
                out.push(limits);
            }
        }
        Ok(out)
    }

    /// The seed's design, for comparison: one transaction per reading, running `check`
    /// on chain. Sent back to back; returns when all are mined.
    pub async fn check_transactions(&self, inputs: &[CheckInput]) -> Result<Vec<TxOutcome>, Error> {
        let txs = inputs
            .iter()
            .map(|input| TxRequest {
                to: Some(self.suite.rule_manager),
                input: check_call(input).abi_encode().into(),
            })
            .collect();
        let sent = self.backend.send_many(txs).await.map_err(decode_revert)?;
        Ok(sent.into_iter().map(|s| s.outcome).collect())
    }

    // ----- devices -----

    /// Registers `device` (active; `device.active` is ignored). Registrars only; an EPC
    /// registers once.
    pub async fn register_device(&self, device: &Device) -> Result<TxOutcome, Error> {
        let call = DeviceRegistry::registerCall {
            epc: FixedBytes(device.epc),
            group: device.group,
            ruleId: device.rule_id,
            ward: device.ward.clone(),
        };
        Ok(self.send(self.suite.device_registry, call).await?.outcome)
    }

    /// Deactivates device `epc` for good.
    pub async fn deactivate_device(&self, epc: [u8; 12]) -> Result<TxOutcome, Error> {
        let call = DeviceRegistry::deactivateCall {
            epc: FixedBytes(epc),
        };
        Ok(self.send(self.suite.device_registry, call).await?.outcome)
    }

    /// Device `epc`, if registered.
    pub async fn device(&self, epc: [u8; 12]) -> Result<Option<Device>, Error> {
        let answer = self
            .read(
                self.suite.device_registry,
                DeviceRegistry::deviceCall {
                    epc: FixedBytes(epc),
                },
                "device",
            )
            .await?;
        Ok(answer.registered.then_some(Device {
            epc,
            group: answer.group,
            rule_id: answer.ruleId,
            ward: answer.ward,
            active: answer.active,
        }))
    }

    /// Every registered device, in registration order.
    pub async fn devices(&self) -> Result<Vec<Device>, Error> {
        let count = self
            .read_count(
                self.suite.device_registry,
                DeviceRegistry::deviceCountCall {},
                "deviceCount",
            )
            .await?;
        let mut devices = Vec::new();
        for index in 0..count {
            let epc = self
                .read(
                    self.suite.device_registry,
                    DeviceRegistry::epcAtCall {
                        index: alloy::primitives::U256::from(index),
                    },
                    "epcAt",
                )
                .await?;
            if let Some(device) = self.device(epc.0).await? {
                devices.push(device);
            }
        }
        Ok(devices)
    }

    // ----- consent -----

    /// `patient` (this ledger's account) allows `authority`.
    pub async fn grant_consent(
        &self,
        patient: Address,
        authority: Address,
    ) -> Result<TxOutcome, Error> {
        let call = Consent::grantCall { patient, authority };
        Ok(self.send(self.suite.consent, call).await?.outcome)
    }

    /// `patient` (this ledger's account) withdraws `authority`'s access.
    pub async fn revoke_consent(
        &self,
        patient: Address,
        authority: Address,
    ) -> Result<TxOutcome, Error> {
        let call = Consent::revokeCall { patient, authority };
        Ok(self.send(self.suite.consent, call).await?.outcome)
    }

    /// Whether `authority` has `patient`'s consent.
    pub async fn consent(&self, patient: Address, authority: Address) -> Result<bool, Error> {
        self.read(
            self.suite.consent,
            Consent::allowedCall { patient, authority },
            "allowed",
        )
        .await
    }

    // ----- anchors -----

    /// Anchors `anchor` (anchorers only).
    pub async fn anchor(&self, anchor: &Anchor) -> Result<TxOutcome, Error> {
        let call = AuditAnchor::anchorCall {
            logId: anchor.log_id,
            root: anchor.root,
            count: anchor.count,
            firstTime: anchor.first_time,
            lastTime: anchor.last_time,
        };
        Ok(self.send(self.suite.audit_anchor, call).await?.outcome)
    }

    /// The anchor of `root`, if anchored.
    pub async fn anchored(&self, root: B256) -> Result<Option<AnchorRecord>, Error> {
        let answer = self
            .read(
                self.suite.audit_anchor,
                AuditAnchor::anchorOfCall { root },
                "anchorOf",
            )
            .await?;
        if answer.anchorer == Address::ZERO {
            return Ok(None);
        }
        Ok(Some(AnchorRecord {
            anchor: Anchor {
                log_id: answer.logId,
                root,
                count: answer.count,
                first_time: answer.firstTime,
                last_time: answer.lastTime,
            },
            anchorer: answer.anchorer,
            block: answer.blockNumber,
        }))
    }

    /// How many roots were anchored.
    pub async fn anchor_count(&self) -> Result<u64, Error> {
        self.read_count(
            self.suite.audit_anchor,
            AuditAnchor::anchorCountCall {},
            "anchorCount",
        )
        .await
    }

    /// Every anchor in blocks `from..=to` (from the `Anchored` events), oldest first.
    pub async fn anchors(&self, from: u64, to: u64) -> Result<Vec<AnchorRecord>, Error> {
        let logs = self
            .backend
            .logs(&[self.suite.audit_anchor], from, to)
            .await?;
        let mut out = Vec::new();
        for log in &logs {
            if let Some(PositionedEvent {
                event:
                    LedgerEvent::Anchored {
                        anchor, anchorer, ..
                    },
                position,
                ..
            }) = decode_event(log)?
            {
                out.push(AnchorRecord {
                    anchor,
                    anchorer,
                    block: position.block,
                });
            }
        }
        Ok(out)
    }

    // ----- events -----

    /// The suite's events in blocks `from..=to`, in chain order. Logs of other contracts
    /// and unknown events are skipped.
    pub async fn events(&self, from: u64, to: u64) -> Result<Vec<PositionedEvent>, Error> {
        let logs = self.backend.logs(&self.suite.addresses(), from, to).await?;
        let mut events = Vec::with_capacity(logs.len());
        for log in &logs {
            if let Some(event) = decode_event(log)? {
                events.push(event);
            }
        }
        Ok(events)
    }
}

async fn deploy<B: Backend>(
    backend: &B,
    code: &Bytes,
    args: Vec<u8>,
) -> Result<(Address, u64), Error> {
    let mut input = code.to_vec();
    input.extend_from_slice(&args);
    let sent = backend
        .send(TxRequest {
            to: None,
            input: input.into(),
        })
        .await
        .map_err(decode_revert)?;
    let address = sent.created.ok_or(Error::UnexpectedAnswer {
        what: "a deployment without a contract address",
    })?;
    Ok((address, sent.outcome.block))
}

fn check_call(input: &CheckInput) -> RuleManager::checkCall {
    RuleManager::checkCall {
        group: input.group,
        patient: input.patient.map_or(B256::ZERO, |p| p.0),
        dataType: input.data_type,
        unit: input.unit.clone(),
        components: input
            .components
            .iter()
            .map(|c| RuleManager::Dec {
                mantissa: c.mantissa,
                scale: c.scale,
            })
            .collect(),
        perMinute: input.per_minute,
    }
}

fn to_manager_limit(limit: &AlarmLimit) -> RuleManager::AlarmLimit {
    RuleManager::AlarmLimit {
        component: limit.component,
        trigger: limit.trigger as u8,
        priority: limit.priority as u8,
        bound: RuleManager::Dec {
            mantissa: limit.bound.mantissa,
            scale: limit.bound.scale,
        },
    }
}

fn from_limit(
    component: u8,
    trigger: u8,
    priority: u8,
    mantissa: i128,
    scale: u8,
) -> Result<AlarmLimit, Error> {
    let bad = Error::UnexpectedAnswer {
        what: "an alarm limit",
    };
    Ok(AlarmLimit {
        component,
        trigger: Trigger::from_code(trigger).ok_or(bad)?,
        priority: Priority::from_code(priority).ok_or(Error::UnexpectedAnswer {
            what: "an alarm limit",
        })?,
        bound: WideDecimal::new(mantissa, scale),
    })
}

fn from_manager_limit(limit: RuleManager::AlarmLimit) -> Result<AlarmLimit, Error> {
    from_limit(
        limit.component,
        limit.trigger,
        limit.priority,
        limit.bound.mantissa,
        limit.bound.scale,
    )
}

fn from_manager_limits(limits: Vec<RuleManager::AlarmLimit>) -> Result<Vec<AlarmLimit>, Error> {
    limits.into_iter().map(from_manager_limit).collect()
}

fn to_manager_range(range: Range) -> RuleManager::Range {
    RuleManager::Range {
        min: RuleManager::Dec {
            mantissa: range.min.mantissa,
            scale: range.min.scale,
        },
        max: RuleManager::Dec {
            mantissa: range.max.mantissa,
            scale: range.max.scale,
        },
    }
}

fn from_rule_range(range: RangeRule::Range) -> Range {
    Range {
        min: WideDecimal::new(range.min.mantissa, range.min.scale),
        max: WideDecimal::new(range.max.mantissa, range.max.scale),
    }
}

fn from_manager_range(range: RuleManager::Range) -> Range {
    Range {
        min: WideDecimal::new(range.min.mantissa, range.min.scale),
        max: WideDecimal::new(range.max.mantissa, range.max.scale),
    }
}

/// Turns revert data into the contract's error; other errors pass through.
pub(crate) fn decode_revert(error: Error) -> Error {
    let Error::Contract(ContractError::Other(data)) = &error else {
        return error;
    };
    decode_revert_data(data).map_or(error, Error::Contract)
}

fn decode_revert_data(data: &Bytes) -> Option<ContractError> {
    use AuditAnchor::AuditAnchorErrors as A;
    use AuthorityRegistry::AuthorityRegistryErrors as Z;
    use Consent::ConsentErrors as C;
    use DeviceRegistry::DeviceRegistryErrors as D;
    use RangeRule::RangeRuleErrors as R;
    use RuleManager::RuleManagerErrors as M;
    if let Ok(e) = M::abi_decode(data) {
        return Some(match e {
            M::AccessControlUnauthorizedAccount(e) => ContractError::Unauthorized {
                account: e.account,
                role: e.neededRole,
            },
            M::RuleAlreadyRegistered(e) => ContractError::RuleAlreadyRegistered(e.ruleId),
            M::UnknownRule(e) => ContractError::UnknownRule(e.ruleId),
            M::RuleNotManaged(e) => ContractError::RuleNotManaged(e.rule),
            M::NotResponsible(e) => ContractError::NotResponsible {
                caller: e.caller,
                patient: e.patient,
            },
            M::InvalidPatient(_) => ContractError::InvalidPatient,
            M::InvalidAlarmLimit(e) => ContractError::InvalidAlarmLimit(e.index.saturating_to()),
            M::PatientLimitsNotSet(e) => ContractError::PatientLimitsNotSet {
                patient: e.patient,
                data_type: e.dataType,
            },
            M::AccessControlBadConfirmation(_) => ContractError::Other(data.clone()),
        });
    }
    if let Ok(e) = R::abi_decode(data) {
        return Some(match e {
            R::NotManager(e) => ContractError::NotManager(e.caller),
            R::ComponentCount(e) => ContractError::ComponentCount(e.count.saturating_to()),
            R::InvalidRange(e) => ContractError::InvalidRange(e.index.saturating_to()),
            R::InvalidUnit(_) => ContractError::InvalidUnit,
            R::DataTypeNotSet(e) => ContractError::DataTypeNotSet(e.dataType),
            R::InvalidAlarmLimit(e) => ContractError::InvalidAlarmLimit(e.index.saturating_to()),
        });
    }
    if let Ok(e) = D::abi_decode(data) {
        return Some(match e {
            D::DeviceAlreadyRegistered(e) => ContractError::DeviceAlreadyRegistered(e.epc.0),
            D::UnknownDevice(e) => ContractError::UnknownDevice(e.epc.0),
            D::DeviceInactive(e) => ContractError::DeviceInactive(e.epc.0),
            D::InvalidWard(_) => ContractError::InvalidWard,
            _ => return None,
        });
    }
    if let Ok(e) = C::abi_decode(data) {
        return Some(match e {
            C::NotPatient(e) => ContractError::NotPatient {
                caller: e.caller,
                patient: e.patient,
            },
            C::ZeroAuthority(_) => ContractError::ZeroAuthority,
            C::AlreadyGranted(e) => ContractError::AlreadyGranted {
                patient: e.patient,
                authority: e.authority,
            },
            C::NotGranted(e) => ContractError::NotGranted {
                patient: e.patient,
                authority: e.authority,
            },
        });
    }
    if let Ok(e) = Z::abi_decode(data) {
        return Some(match e {
            Z::InvalidId(_) => ContractError::InvalidAuthorityId,
            Z::InvalidKind(e) => ContractError::InvalidAuthorityKind(e.kind),
            Z::OrganisationAlreadyRegistered(e) => {
                ContractError::AuthorityAlreadyRegistered(e.organisation)
            }
            Z::UnknownOrganisation(e) => ContractError::UnknownAuthority(e.organisation),
            Z::OrganisationActiveAlready(e) => ContractError::AuthorityActiveAlready {
                organisation: e.organisation,
                active: e.active,
            },
            Z::SubjectAlreadyBound(e) => ContractError::SubjectAlreadyBound {
                subject: e.subject,
                organisation: e.organisation,
            },
            Z::UnknownSubject(e) => ContractError::UnknownAuthoritySubject(e.subject),
            Z::AccessAlreadyGranted(e) => ContractError::AuthorityAccessAlreadyGranted {
                patient: e.patient,
                organisation: e.organisation,
            },
            Z::AccessNotGranted(e) => ContractError::AuthorityAccessNotGranted {
                patient: e.patient,
                organisation: e.organisation,
            },
            _ => return None,
        });
    }
    if let Ok(e) = A::abi_decode(data) {
        return Some(match e {
            A::RootAlreadyAnchored(e) => ContractError::RootAlreadyAnchored(e.root),
            A::EmptyAnchor(_) => ContractError::EmptyAnchor,
            A::TimeRangeReversed(e) => ContractError::TimeRangeReversed {
                first: e.firstTime,
                last: e.lastTime,
            },
            _ => return None,
        });
    }
    None
}

/// Decodes one log of the suite; `None` for a log that is not a suite event.
pub(crate) fn decode_event(log: &LogEntry) -> Result<Option<PositionedEvent>, Error> {
    let event = decode_log(log);
    Ok(event.map(|event| PositionedEvent {
        position: EventPosition {
            block: log.block,
            log_index: log.log_index,
        },
        tx_hash: log.tx_hash,
        event,
    }))
}

fn decode_log(log: &LogEntry) -> Option<LedgerEvent> {
    use AuditAnchor::AuditAnchorEvents as A;
    use AuthorityRegistry::AuthorityRegistryEvents as Z;
    use Consent::ConsentEvents as C;
    use DeviceRegistry::DeviceRegistryEvents as D;
    use RuleManager::RuleManagerEvents as M;
    let (topics, data) = (log.topics.as_slice(), log.data.as_ref());
    if let Ok(e) = M::decode_raw_log(topics, data) {
        return match e {
            M::RuleRegistered(e) => Some(LedgerEvent::RuleRegistered {
                rule_id: e.ruleId,
                address: e.rule,
            }),
            M::GroupRuleSet(e) => Some(LedgerEvent::GroupRuleSet {
                group: e.group,
                rule_id: e.ruleId,
            }),
            M::TypeRuleSet(e) => Some(LedgerEvent::TypeRuleSet {
                rule_id: e.ruleId,
                rule: TypeRule {
                    data_type: e.dataType,
                    unit: e.unit,
                    ranges: e.ranges.into_iter().map(from_manager_range).collect(),
                    alarms: from_manager_limits(e.alarms).ok()?,
                    max_per_minute: e.maxPerMinute,
                },
            }),
            M::ClinicianSet(e) => Some(LedgerEvent::ClinicianSet {
                patient: PatientKey(e.patient),
                clinician: e.clinician,
                responsible: e.responsible,
            }),
            M::PatientLimitsSet(e) => Some(LedgerEvent::PatientLimitsSet {
                limits: PatientLimits {
                    patient: PatientKey(e.patient),
                    data_type: e.dataType,
                    limits: from_manager_limits(e.limits).ok()?,
                },
                by: e.by,
            }),
            M::PatientLimitsCleared(e) => Some(LedgerEvent::PatientLimitsCleared {
                patient: PatientKey(e.patient),
                data_type: e.dataType,
                by: e.by,
            }),
            M::TypeRuleRemoved(e) => Some(LedgerEvent::TypeRuleRemoved {
                rule_id: e.ruleId,
                data_type: e.dataType,
            }),
            // AccessControl's events have one signature in every contract that has roles.
            M::RoleGranted(e) => Some(LedgerEvent::RoleGranted {
                contract: log.address,
                role: e.role,
                account: e.account,
            }),
            M::RoleRevoked(e) => Some(LedgerEvent::RoleRevoked {
                contract: log.address,
                role: e.role,
                account: e.account,
            }),
            M::RoleAdminChanged(_) => None,
        };
    }
    if let Ok(e) = D::decode_raw_log(topics, data) {
        return match e {
            D::DeviceRegistered(e) => Some(LedgerEvent::DeviceRegistered(Device {
                epc: e.epc.0,
                group: e.group,
                rule_id: e.ruleId,
                ward: e.ward,
                active: true,
            })),
            D::DeviceDeactivated(e) => Some(LedgerEvent::DeviceDeactivated { epc: e.epc.0 }),
            _ => None,
        };
    }
    if let Ok(e) = C::decode_raw_log(topics, data) {
        return Some(match e {
            C::ConsentGranted(e) => LedgerEvent::ConsentGranted {
                patient: e.patient,
                authority: e.authority,
            },
            C::ConsentRevoked(e) => LedgerEvent::ConsentRevoked {
                patient: e.patient,
                authority: e.authority,
            },
        });
    }
    if let Ok(e) = Z::decode_raw_log(topics, data) {
        return match e {
            Z::OrganisationRegistered(e) => Some(LedgerEvent::OrganisationRegistered {
                organisation: e.organisation,
                kind: wardseal_core::identity::AuthorityKind::from_code(u32::from(e.kind))?,
            }),
            Z::OrganisationActiveSet(e) => Some(LedgerEvent::OrganisationActiveSet {
                organisation: e.organisation,
                active: e.active,
            }),
            Z::SubjectBound(e) => Some(LedgerEvent::SubjectBound {
                subject: e.subject,
                organisation: e.organisation,
            }),
            Z::SubjectUnbound(e) => Some(LedgerEvent::SubjectUnbound {
                subject: e.subject,
                organisation: e.organisation,
            }),
            Z::AccessGranted(e) => Some(LedgerEvent::AccessGranted {
                patient: e.patient,
                organisation: e.organisation,
            }),
            Z::AccessRevoked(e) => Some(LedgerEvent::AccessRevoked {
                patient: e.patient,
                organisation: e.organisation,
            }),
            // AccessControl's role events are decoded through the RuleManager above.
            _ => None,
        };
    }
    if let Ok(e) = A::decode_raw_log(topics, data) {
        return match e {
            A::Anchored(e) => Some(LedgerEvent::Anchored {
                anchor: Anchor {
                    log_id: e.logId,
                    root: e.root,
                    count: e.count,
                    first_time: e.firstTime,
                    last_time: e.lastTime,
                },
                anchorer: e.anchorer,
                sequence: e.sequence.saturating_to(),
            }),
            _ => None,
        };
    }
    None
}
