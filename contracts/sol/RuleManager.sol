// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {AlarmLimit, Dec, Range, Verdict, MAX_ALARM_LIMITS, MAX_VALUE_COMPONENTS, firstInvalidLimit, worstAlarm} from "./Types.sol";
import {IRule} from "./IRule.sol";
import {RangeRule} from "./RangeRule.sol";

/// @notice Keeps the rule contracts by rule id and which rule each device group follows,
///         and per-patient overrides of the clinical alarm limits. Only accounts with
///         RULE_ADMIN_ROLE change rules and say which clinicians are responsible for a
///         patient; a patient's alarm limits are set by a rule admin or a responsible
///         clinician. Every change is an event, so collectors keep a replica by following
///         this one contract. Patients are pseudonymous 32-byte keys (a hash of the
///         subject id), never personal data.
contract RuleManager is AccessControl {
    /// @notice The role that registers rules, assigns them to groups and changes them.
    bytes32 public constant RULE_ADMIN_ROLE = keccak256("wardseal.RULE_ADMIN_ROLE");

    struct GroupRule {
        bool set;
        uint32 ruleId;
    }

    mapping(uint32 => address) private _rules;
    uint32[] private _ruleIds;
    mapping(uint32 => GroupRule) private _groupRules;
    uint32[] private _groups;

    struct PatientLimits {
        bool set;
        bool listed;
        AlarmLimit[] limits;
    }

    struct PatientType {
        bytes32 patient;
        uint16 dataType;
    }

    mapping(bytes32 => mapping(address => bool)) private _responsible;
    mapping(bytes32 => mapping(uint16 => PatientLimits)) private _patientLimits;
    // Every (patient, data type) ever overridden, so a replica can be bootstrapped by query.
    PatientType[] private _overridden;

    /// @notice A rule contract was registered under `ruleId`.
    event RuleRegistered(uint32 indexed ruleId, address rule);
    /// @notice Group `group` now follows rule `ruleId`.
    event GroupRuleSet(uint32 indexed group, uint32 indexed ruleId);
    /// @notice Rule `ruleId` now allows `dataType` with this unit, plausibility ranges,
    ///         alarm limits and rate.
    event TypeRuleSet(
        uint32 indexed ruleId, uint16 indexed dataType, string unit, Range[] ranges, AlarmLimit[] alarms, uint32 maxPerMinute
    );
    /// @notice Rule `ruleId` no longer allows `dataType`.
    event TypeRuleRemoved(uint32 indexed ruleId, uint16 indexed dataType);

    /// @notice `clinician` is now (or no longer) responsible for `patient`.
    event ClinicianSet(bytes32 indexed patient, address indexed clinician, bool responsible);
    /// @notice `patient`'s alarm limits for `dataType` are now `limits` (replacing the rule's),
    ///         set by `by`.
    event PatientLimitsSet(bytes32 indexed patient, uint16 indexed dataType, AlarmLimit[] limits, address by);
    /// @notice `patient`'s alarm limits for `dataType` are the rule's again, as `by` decided.
    event PatientLimitsCleared(bytes32 indexed patient, uint16 indexed dataType, address by);

    /// @notice The caller is neither a rule admin nor a clinician responsible for `patient`.
    error NotResponsible(address caller, bytes32 patient);
    /// @notice The patient key is zero (zero means "no patient" in `check`).
    error InvalidPatient();
    /// @notice Override limit `index` names a component beyond the eighth, has no
    ///         priority or a scale above 18; or the override holds 0 or more than
    ///         MAX_ALARM_LIMITS limits (index = the count).
    error InvalidAlarmLimit(uint256 index);
    /// @notice The patient has no override for this data type.
    error PatientLimitsNotSet(bytes32 patient, uint16 dataType);
    /// @notice A rule is already registered under this id.
    error RuleAlreadyRegistered(uint32 ruleId);
    /// @notice No rule is registered under this id.
    error UnknownRule(uint32 ruleId);
    /// @notice The rule contract names another manager or another rule id.
    error RuleNotManaged(address rule);

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(RULE_ADMIN_ROLE, admin);
    }

    /// @notice Registers `rule` (whose manager is this contract) under `ruleId`.
    function registerRule(uint32 ruleId, address rule) external onlyRole(RULE_ADMIN_ROLE) {
        if (_rules[ruleId] != address(0)) revert RuleAlreadyRegistered(ruleId);
        if (IRule(rule).manager() != address(this) || IRule(rule).ruleId() != ruleId) revert RuleNotManaged(rule);
        _rules[ruleId] = rule;
        _ruleIds.push(ruleId);
        emit RuleRegistered(ruleId, rule);
    }

    /// @notice Makes group `group` follow rule `ruleId`.
    function setGroupRule(uint32 group, uint32 ruleId) external onlyRole(RULE_ADMIN_ROLE) {
        if (_rules[ruleId] == address(0)) revert UnknownRule(ruleId);
        GroupRule storage g = _groupRules[group];
        if (!g.set) {
            g.set = true;
            _groups.push(group);
        }
        g.ruleId = ruleId;
        emit GroupRuleSet(group, ruleId);
    }

    /// @notice Sets what rule `ruleId` allows for `dataType` (see RangeRule.setTypeRule).
    function setTypeRule(
        uint32 ruleId,
        uint16 dataType,
        string calldata unit,
        Range[] calldata ranges,
        AlarmLimit[] calldata alarms,
        uint32 maxPerMinute
    ) external onlyRole(RULE_ADMIN_ROLE) {
        RangeRule(_rule(ruleId)).setTypeRule(dataType, unit, ranges, alarms, maxPerMinute);
        emit TypeRuleSet(ruleId, dataType, unit, ranges, alarms, maxPerMinute);
    }

    /// @notice Makes `clinician` responsible (or no longer) for `patient`: a responsible
    ///         clinician may set the patient's alarm limits.
    function setResponsibleClinician(bytes32 patient, address clinician, bool responsible)
        external
        onlyRole(RULE_ADMIN_ROLE)
    {
        if (patient == bytes32(0)) revert InvalidPatient();
        _responsible[patient][clinician] = responsible;
        emit ClinicianSet(patient, clinician, responsible);
    }

    /// @notice Replaces, for `patient` only, the alarm limits of `dataType` with `limits`
    ///         (1 to MAX_ALARM_LIMITS). Plausibility ranges stay the rule's. Rule admins
    ///         and the patient's responsible clinicians only.
    function setPatientLimits(bytes32 patient, uint16 dataType, AlarmLimit[] calldata limits)
        external
        onlyAdminOrResponsible(patient)
    {
        if (patient == bytes32(0)) revert InvalidPatient();
        if (limits.length == 0 || limits.length > MAX_ALARM_LIMITS) revert InvalidAlarmLimit(limits.length);
        uint256 invalid = firstInvalidLimit(limits, MAX_VALUE_COMPONENTS);
        if (invalid < limits.length) revert InvalidAlarmLimit(invalid);
        PatientLimits storage p = _patientLimits[patient][dataType];
        if (!p.listed) {
            p.listed = true;
            _overridden.push(PatientType(patient, dataType));
        }
        p.set = true;
        delete p.limits;
        for (uint256 i = 0; i < limits.length; i++) {
            p.limits.push(limits[i]);
        }
        emit PatientLimitsSet(patient, dataType, limits, msg.sender);
    }

    /// @notice Gives `patient` the rule's alarm limits for `dataType` again. Rule admins
    ///         and the patient's responsible clinicians only.
    function clearPatientLimits(bytes32 patient, uint16 dataType) external onlyAdminOrResponsible(patient) {
        PatientLimits storage p = _patientLimits[patient][dataType];
        if (!p.set) revert PatientLimitsNotSet(patient, dataType);
        p.set = false;
        delete p.limits;
        emit PatientLimitsCleared(patient, dataType, msg.sender);
    }

    /// @notice Whether `clinician` is responsible for `patient`.
    function isResponsible(bytes32 patient, address clinician) external view returns (bool) {
        return _responsible[patient][clinician];
    }

    /// @notice `patient`'s own alarm limits for `dataType` (`set` false: the rule's apply).
    function patientLimits(bytes32 patient, uint16 dataType)
        external
        view
        returns (bool set, AlarmLimit[] memory limits)
    {
        PatientLimits storage p = _patientLimits[patient][dataType];
        return (p.set, p.limits);
    }

    /// @notice How many (patient, data type) pairs were ever overridden.
    function overriddenCount() external view returns (uint256) {
        return _overridden.length;
    }

    /// @notice The `index`-th (patient, data type) pair ever overridden.
    function overriddenAt(uint256 index) external view returns (bytes32 patient, uint16 dataType) {
        PatientType storage t = _overridden[index];
        return (t.patient, t.dataType);
    }

    /// @notice Stops rule `ruleId` from allowing `dataType`.
    function removeTypeRule(uint32 ruleId, uint16 dataType) external onlyRole(RULE_ADMIN_ROLE) {
        RangeRule(_rule(ruleId)).removeTypeRule(dataType);
        emit TypeRuleRemoved(ruleId, dataType);
    }

    /// @notice The rule contract registered under `ruleId` (zero if none).
    function ruleAddress(uint32 ruleId) external view returns (address) {
        return _rules[ruleId];
    }

    /// @notice Every registered rule id, in registration order.
    function ruleIds() external view returns (uint32[] memory) {
        return _ruleIds;
    }

    /// @notice The rule group `group` follows (`set` false: none).
    function groupRule(uint32 group) external view returns (bool set, uint32 ruleId) {
        GroupRule storage g = _groupRules[group];
        return (g.set, g.ruleId);
    }

    /// @notice Every group that has a rule, in the order they were first set.
    function groups() external view returns (uint32[] memory) {
        return _groups;
    }

    /// @notice Checks a reading against the rule of its group (see IRule.check) and, when
    ///         it is allowed, against the clinical alarm limits: `patient`'s own for the
    ///         data type if set (`patient` zero: none), else the rule's.
    /// @return verdict the plausibility decision (anything but Allowed: refused)
    /// @return component the failing component's index, 0 otherwise
    /// @return alarm the crossed alarm limit of highest priority (first in order on a
    ///         tie); priority None: no alarm
    /// @return ownLimits whether the patient's own limits were used
    function check(
        uint32 group,
        bytes32 patient,
        uint16 dataType,
        string calldata unit,
        Dec[] calldata components,
        uint32 perMinute
    ) external view returns (Verdict verdict, uint8 component, AlarmLimit memory alarm, bool ownLimits) {
        GroupRule storage g = _groupRules[group];
        if (!g.set) return (Verdict.NoRuleForGroup, 0, alarm, false);
        IRule rule = IRule(_rules[g.ruleId]);
        (verdict, component) = rule.check(group, dataType, unit, components, perMinute);
        if (verdict != Verdict.Allowed) return (verdict, component, alarm, false);
        PatientLimits storage p = _patientLimits[patient][dataType];
        ownLimits = patient != bytes32(0) && p.set;
        alarm = worstAlarm(ownLimits ? p.limits : rule.alarmLimits(dataType), components);
    }

    modifier onlyAdminOrResponsible(bytes32 patient) {
        if (!hasRole(RULE_ADMIN_ROLE, msg.sender) && !_responsible[patient][msg.sender]) {
            revert NotResponsible(msg.sender, patient);
        }
        _;
    }

    function _rule(uint32 ruleId) private view returns (address rule) {
        rule = _rules[ruleId];
        if (rule == address(0)) revert UnknownRule(ruleId);
    }
}
