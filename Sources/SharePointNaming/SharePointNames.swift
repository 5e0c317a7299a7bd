import Foundation

/// SharePoint's rules for item names: what the service refuses, and how crmfs and the sandbox
/// turn CRM text (record names) into folder names it accepts. One rule, used by both sides.
public enum SharePointNames {
    public static let forbiddenCharacters: Set<Character> = ["/", "\\", "*", "<", ">", "?", ":", "|", "#", "%", "\""]

    /// Why SharePoint would refuse `name`, or nil when it is acceptable.
    public static func problem(with name: String, isFolder: Bool) -> String? {
        if name.isEmpty { return "the name is empty" }
        if let bad = name.first(where: { forbiddenCharacters.contains($0) || $0.asciiValue.map { $0 < 32 } == true }) {
            return "the name contains the character '\(bad)', which SharePoint does not allow"
        }
        if name.hasPrefix("~") { return "names may not start with '~'" }
        if name.hasPrefix(" ") || name.hasSuffix(" ") { return "names may not start or end with a space" }
        if isFolder && name.hasSuffix(".") { return "folder names may not end with '.'" }
        if name.utf16.count > 255 { return "the name is longer than 255 characters" }
        let stem = (name as NSString).deletingPathExtension.uppercased()
        if ["CON", "PRN", "AUX", "NUL", "COM1", "LPT1", ".LOCK", "DESKTOP.INI", "_VTI_"].contains(stem) || name.contains("_vti_") {
            return "'\(name)' is a reserved name"
        }
        return nil
    }

    /// Makes any text a folder name SharePoint accepts: forbidden characters become `_`,
    /// surrounding spaces and trailing dots go, and the result is cut to `maxLength` characters.
    public static func sanitize(_ text: String, maxLength: Int) -> String {
        var result = String(text.map { forbiddenCharacters.contains($0) || $0.asciiValue.map { $0 < 32 } == true ? "_" : $0 })
        result = result.trimmingCharacters(in: .whitespaces)
        if result.count > maxLength { result = String(result.prefix(maxLength)).trimmingCharacters(in: .whitespaces) }
        while result.hasSuffix(".") { result.removeLast() }
        if result.hasPrefix("~") { result = "_" + result.dropFirst() }
        return result.isEmpty ? "_" : result
    }
}

