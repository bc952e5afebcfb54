// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AlarmLimit, Dec, Range, Verdict, MAX_ALARM_LIMITS, MAX_SCALE, MAX_VALUE_COMPONENTS, compareDec, firstInvalidLimit} from "./Types.sol";
import {IRule} from "./IRule.sol";

/// @notice A range rule: which data types a group may send, and for each the unit, an
///         inclusive plausibility range per value component (outside: false data,
///         refused), clinical alarm limits (crossed: accepted and flagged) and the most
///         readings per minute.
/// @dev Only its RuleManager changes it; the RuleManager checks the caller's role and
///      emits the events, so a collector follows one contract for every rule change.
contract RangeRule is IRule {
    /// @notice The most components a data type may have.
    uint256 public constant MAX_COMPONENTS = MAX_VALUE_COMPONENTS;

    struct TypeRule {
        bool allowed;
        uint32 maxPerMinute; // 0: no limit
        string unit;
        Range[] ranges;
        AlarmLimit[] alarms;
    }

    /// @inheritdoc IRule
    address public immutable override manager;
    /// @inheritdoc IRule
    uint32 public immutable override ruleId;

    mapping(uint16 => TypeRule) private _rules;
    uint16[] private _dataTypes;

    /// @notice The caller is not this rule's RuleManager.
    error NotManager(address caller);
    /// @notice A type rule needs between 1 and MAX_COMPONENTS ranges.
    error ComponentCount(uint256 count);
    /// @notice Range `index` has a scale above 18 or a minimum above its maximum.
    error InvalidRange(uint256 index);
    /// @notice The unit is empty or longer than 32 bytes.
    error InvalidUnit();
    /// @notice Alarm limit `index` names a missing component, has no priority or a scale
    ///         above 18, or there are more than MAX_ALARM_LIMITS.
    error InvalidAlarmLimit(uint256 index);
    /// @notice The data type has no type rule to remove.
    error DataTypeNotSet(uint16 dataType);

    constructor(address manager_, uint32 ruleId_) {
        manager = manager_;
        ruleId = ruleId_;
    }

    modifier onlyManager() {
        if (msg.sender != manager) revert NotManager(msg.sender);
        _;
    }

    /// @notice Allows `dataType` with `unit`, one plausibility range per component, the
    ///         clinical alarm limits `alarms` and at most `maxPerMinute` readings a minute
    ///         (0: no limit); replaces an earlier setting.
    function setTypeRule(
        uint16 dataType,
        string calldata unit,
        Range[] calldata ranges,
        AlarmLimit[] calldata alarms,
        uint32 maxPerMinute
    ) external onlyManager {
        uint256 unitLength = bytes(unit).length;
        if (unitLength == 0 || unitLength > 32) revert InvalidUnit();
        if (ranges.length == 0 || ranges.length > MAX_COMPONENTS) revert ComponentCount(ranges.length);
        for (uint256 i = 0; i < ranges.length; i++) {
            Range calldata r = ranges[i];
            if (r.min.scale > MAX_SCALE || r.max.scale > MAX_SCALE || compareDec(r.min, r.max) > 0) {
                revert InvalidRange(i);
            }
        }
        if (alarms.length > MAX_ALARM_LIMITS) revert InvalidAlarmLimit(MAX_ALARM_LIMITS);
        uint256 invalid = firstInvalidLimit(alarms, ranges.length);
        if (invalid < alarms.length) revert InvalidAlarmLimit(invalid);
        TypeRule storage rule = _rules[dataType];
        if (!rule.allowed) {
            _dataTypes.push(dataType);
        }
        rule.allowed = true;
        rule.maxPerMinute = maxPerMinute;
        rule.unit = unit;
        delete rule.ranges;
        for (uint256 i = 0; i < ranges.length; i++) {
            rule.ranges.push(ranges[i]);
        }
        delete rule.alarms;
        for (uint256 i = 0; i < alarms.length; i++) {
            rule.alarms.push(alarms[i]);
        }
    }

    /// @notice Stops allowing `dataType`.
    function removeTypeRule(uint16 dataType) external onlyManager {
        if (!_rules[dataType].allowed) revert DataTypeNotSet(dataType);
        delete _rules[dataType];
        uint256 n = _dataTypes.length;
        for (uint256 i = 0; i < n; i++) {
            if (_dataTypes[i] == dataType) {
                _dataTypes[i] = _dataTypes[n - 1];
                _dataTypes.pop();
                break;
            }
        }
    }

    /// @notice The data types this rule allows.
    function dataTypes() external view returns (uint16[] memory) {
        return _dataTypes;
    }

    /// @notice The setting for `dataType` (`allowed` false: not allowed).
    function typeRule(uint16 dataType)
        external
        view
        returns (bool allowed, string memory unit, Range[] memory ranges, AlarmLimit[] memory alarms, uint32 maxPerMinute)
    {
        TypeRule storage rule = _rules[dataType];
        return (rule.allowed, rule.unit, rule.ranges, rule.alarms, rule.maxPerMinute);
    }

    /// @inheritdoc IRule
    function alarmLimits(uint16 dataType) external view override returns (AlarmLimit[] memory) {
        return _rules[dataType].alarms;
    }

    /// @inheritdoc IRule
    /// @dev Order of checks (the native evaluator keeps it): data type, unit, component
    ///      count, then per component in order scale, minimum, maximum; the rate last.
    function check(uint32, uint16 dataType, string calldata unit, Dec[] calldata components, uint32 perMinute)
        external
        view
        override
        returns (Verdict, uint8)
    {
        TypeRule storage rule = _rules[dataType];
        if (!rule.allowed) return (Verdict.DataTypeNotAllowed, 0);
        if (keccak256(bytes(unit)) != keccak256(bytes(rule.unit))) return (Verdict.WrongUnit, 0);
        uint256 n = rule.ranges.length;
        if (components.length != n) return (Verdict.WrongComponentCount, 0);
        for (uint256 i = 0; i < n; i++) {
            Dec memory value = components[i];
            if (value.scale > MAX_SCALE) return (Verdict.InvalidScale, uint8(i));
            Range memory range = rule.ranges[i];
            if (compareDec(value, range.min) < 0) return (Verdict.BelowMinimum, uint8(i));
            if (compareDec(value, range.max) > 0) return (Verdict.AboveMaximum, uint8(i));
        }
        if (rule.maxPerMinute != 0 && perMinute > rule.maxPerMinute) return (Verdict.RateExceeded, 0);
        return (Verdict.Allowed, 0);
    }
}
