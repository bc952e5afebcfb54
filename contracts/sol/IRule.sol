// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AlarmLimit, Dec, Verdict} from "./Types.sol";

/// @notice What every rule contract answers. A rule is registered in the RuleManager
///         under a rule id and changed only through it.
interface IRule {
    /// @notice The RuleManager that may change this rule.
    function manager() external view returns (address);

    /// @notice The rule id this rule was created for.
    function ruleId() external view returns (uint32);

    /// @notice The clinical alarm limits of `dataType` (empty when none or not allowed).
    function alarmLimits(uint16 dataType) external view returns (AlarmLimit[] memory);

    /// @notice Whether a reading is plausible (and within the rate): a refusal means
    ///         false data. Clinical alarm limits are not checked here.
    /// @param group the device's group id (from its certificate)
    /// @param dataType the wardseal data type code (wardseal_core DataType::code)
    /// @param unit the UCUM unit the device stated
    /// @param components the value: [value] for a quantity, [systolic, diastolic] for
    ///        blood pressure, [lowest sample, highest sample] (physical values) for a waveform
    /// @param perMinute readings of this data type from this device in the 60 s ending
    ///        with this one, this one included (the collector counts them)
    /// @return verdict the decision
    /// @return component the index of the component that failed, 0 otherwise
    function check(uint32 group, uint16 dataType, string calldata unit, Dec[] calldata components, uint32 perMinute)
        external
        view
        returns (Verdict verdict, uint8 component);
}
