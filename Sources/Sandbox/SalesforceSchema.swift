import Foundation

/// The sObjects the sandbox org knows, with what describe reports of each field.
struct SObjectSchema: Sendable {
    var name: String
    var label: String
    var labelPlural: String
    var keyPrefix: String
    var custom = false
    var createable = true
    var updateable = true
    var deletable = true
    var queryable = true
    var fields: [FieldSchema]

    func field(_ name: String) -> FieldSchema? {
        // Exact first: queries mostly name fields as the schema does, and this runs per record and field.
        if let exact = fields.first(where: { $0.name == name }) { return exact }
        let lowered = name.lowercased()
        return fields.first { $0.name.lowercased() == lowered }
    }

    /// A reference field reached through its relationship name (`Account` for `AccountId`).
    func relationship(_ name: String) -> FieldSchema? {
        fields.first { $0.relationshipName?.caseInsensitiveCompare(name) == .orderedSame }
    }
}

struct FieldSchema: Sendable {
    var name: String
    var label: String
    var type: String
    var length = 0
    var updateable = true
    var createable = true
    var nillable = true
    var calculated = false
    var externalId = false
    var unique = false
    var autoNumber = false
    var referenceTo: [String] = []
    var relationshipName: String?
    var picklist: [String] = []

    var custom: Bool { name.hasSuffix("__c") }

    static func id() -> FieldSchema {
        FieldSchema(name: "Id", label: "Record ID", type: "id", length: 18, updateable: false, createable: false, nillable: false)
    }
    static func text(_ name: String, _ label: String, length: Int = 255, required: Bool = false) -> FieldSchema {
        FieldSchema(name: name, label: label, type: "string", length: length, nillable: !required)
    }
    static func system(_ name: String, _ label: String, _ type: String) -> FieldSchema {
        FieldSchema(name: name, label: label, type: type, updateable: false, createable: false, nillable: type != "boolean")
    }
    static func reference(_ name: String, _ label: String, to target: String, relationship: String) -> FieldSchema {
        FieldSchema(name: name, label: label, type: "reference", length: 18, referenceTo: [target], relationshipName: relationship)
    }
    static func picklist(_ name: String, _ label: String, _ values: [String]) -> FieldSchema {
        FieldSchema(name: name, label: label, type: "picklist", length: 255, picklist: values)
    }
    static func typed(_ name: String, _ label: String, _ type: String) -> FieldSchema {
        FieldSchema(name: name, label: label, type: type)
    }
}

enum SalesforceSchema {
    static let industries = ["Technology", "Manufacturing", "Healthcare", "Finance", "Retail", "Energy", "Education", "Media"]
    static let stages = ["Prospecting", "Qualification", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"]
    static let caseStatuses = ["New", "Working", "Escalated", "Closed"]

    private static let audit: [FieldSchema] = [
        .system("OwnerId", "Owner ID", "reference"),
        .system("CreatedDate", "Created Date", "datetime"),
        .system("LastModifiedDate", "Last Modified Date", "datetime"),
        .system("SystemModstamp", "System Modstamp", "datetime"),
        .system("IsDeleted", "Deleted", "boolean"),
    ]

    static let objects: [String: SObjectSchema] = {
        let list: [SObjectSchema] = [
            SObjectSchema(name: "Account", label: "Account", labelPlural: "Accounts", keyPrefix: "001", fields: [
                .id(), .text("Name", "Account Name", required: true), .text("AccountNumber", "Account Number", length: 40),
                .picklist("Industry", "Industry", industries),
                .picklist("Type", "Account Type", ["Customer - Direct", "Customer - Channel", "Partner", "Prospect"]),
                .text("BillingCity", "Billing City", length: 40), .text("BillingCountry", "Billing Country", length: 80),
                .typed("Phone", "Account Phone", "phone"), .typed("Website", "Website", "url"),
                .typed("AnnualRevenue", "Annual Revenue", "currency"), .typed("NumberOfEmployees", "Employees", "int"),
                .typed("Description", "Account Description", "textarea"),
            ] + audit),
            SObjectSchema(name: "Opportunity", label: "Opportunity", labelPlural: "Opportunities", keyPrefix: "006", fields: [
                .id(), .text("Name", "Name", length: 120, required: true),
                FieldSchema(name: "OpportunityNumber__c", label: "Opportunity Number", type: "string", length: 30,
                            updateable: false, createable: false, nillable: false, autoNumber: true),
                .reference("AccountId", "Account ID", to: "Account", relationship: "Account"),
                .picklist("StageName", "Stage", stages), .typed("Amount", "Amount", "currency"),
                .typed("CloseDate", "Close Date", "date"), .typed("Probability", "Probability (%)", "percent"),
                .picklist("Type", "Opportunity Type", ["New Business", "Existing Business - Upgrade", "Existing Business - Renewal"]),
            ] + audit),
            SObjectSchema(name: "Case", label: "Case", labelPlural: "Cases", keyPrefix: "500", fields: [
                .id(),
                FieldSchema(name: "CaseNumber", label: "Case Number", type: "string", length: 30,
                            updateable: false, createable: false, nillable: false, autoNumber: true),
                .text("Subject", "Subject"), .picklist("Status", "Status", caseStatuses),
                .picklist("Priority", "Priority", ["High", "Medium", "Low"]),
                .picklist("Origin", "Case Origin", ["Phone", "Email", "Web"]),
                .reference("AccountId", "Account ID", to: "Account", relationship: "Account"),
                .typed("Description", "Description", "textarea"),
            ] + audit),
            SObjectSchema(name: "User", label: "User", labelPlural: "Users", keyPrefix: "005", createable: false, updateable: false, deletable: false, fields: [
                .id(), .text("Name", "Full Name", length: 121), .text("Username", "Username", length: 80), .typed("Email", "Email", "email"),
            ] + audit),
            SObjectSchema(name: "SharePoint_Document__c", label: "SharePoint Document", labelPlural: "SharePoint Documents", keyPrefix: "a0S", custom: true, fields: [
                .id(), .text("Name", "Document Name", length: 80, required: true),
                .text("Record_Id__c", "Record Id", length: 18), .text("Object_Type__c", "Object Type", length: 40),
                .text("Drive_Id__c", "Drive Id", length: 255),
                FieldSchema(name: "Item_Id__c", label: "Item Id", type: "string", length: 255, externalId: true, unique: true),
                .typed("Web_Url__c", "Web URL", "url"), .text("ETag__c", "ETag", length: 255),
                .typed("Size__c", "Size", "double"), .typed("Last_Synced__c", "Last Synced", "datetime"),
            ] + audit),
            SObjectSchema(name: "ExternalDataSource", label: "External Data Source", labelPlural: "External Data Sources", keyPrefix: "0XC", fields: [
                .id(), .text("DeveloperName", "Name", length: 80), .text("MasterLabel", "Label", length: 80),
                .text("Type", "Type", length: 40), .typed("Endpoint", "URL", "url"),
            ] + audit),
            SObjectSchema(name: "ContentVersion", label: "Content Version", labelPlural: "Content Versions", keyPrefix: "068", fields: [
                .id(), .text("Title", "Title"), .text("PathOnClient", "Path On Client"),
                .picklist("ContentLocation", "Content Location", ["S", "E", "L"]),
                .reference("ContentDocumentId", "Content Document ID", to: "ContentDocument", relationship: "ContentDocument"),
                .reference("ExternalDataSourceId", "External Data Source", to: "ExternalDataSource", relationship: "ExternalDataSource"),
                .text("ExternalDocumentInfo1", "External Document Info 1", length: 1000),
                .text("ExternalDocumentInfo2", "External Document Info 2", length: 1000),
                .reference("FirstPublishLocationId", "First Publish Location", to: "Account", relationship: "FirstPublishLocation"),
            ] + audit),
            SObjectSchema(name: "ContentDocument", label: "Content Document", labelPlural: "Content Documents", keyPrefix: "069", createable: false, fields: [
                .id(), .text("Title", "Title"),
                .reference("LatestPublishedVersionId", "Latest Published Version", to: "ContentVersion", relationship: "LatestPublishedVersion"),
            ] + audit),
            SObjectSchema(name: "ContentDocumentLink", label: "Content Document Link", labelPlural: "Content Document Links", keyPrefix: "06A", updateable: true, fields: [
                .id(),
                .reference("ContentDocumentId", "Content Document ID", to: "ContentDocument", relationship: "ContentDocument"),
                .reference("LinkedEntityId", "Linked Entity ID", to: "Account", relationship: "LinkedEntity"),
                .picklist("ShareType", "Share Type", ["V", "C", "I"]),
                .picklist("Visibility", "Visibility", ["AllUsers", "InternalUsers", "SharedUsers"]),
            ] + audit),
        ]
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name.lowercased(), $0) })
    }()

    static func object(_ name: String) -> SObjectSchema? { objects[name.lowercased()] }

    static func object(forID id: String) -> SObjectSchema? {
        objects.values.first { id.hasPrefix($0.keyPrefix) }
    }
}

/// Salesforce record ids: 15 case-sensitive characters, plus a 3-character case-folding checksum.
/// Salesforce record Ids as the sandbox makes them: a key prefix, a serial, and the 18-character suffix.
public enum SalesforceID {
    private static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    private static let suffixAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")

    public static func make(prefix: String, serial: Int, pod: String = "8d0") -> String {
        var digits: [Character] = []
        var value = serial
        for _ in 0..<9 {
            digits.insert(alphabet[value % alphabet.count], at: 0)
            value /= alphabet.count
        }
        let fifteen = prefix + pod + String(digits)
        return fifteen + checksum(fifteen)
    }

    static func checksum(_ fifteen: String) -> String {
        let characters = Array(fifteen)
        var suffix = ""
        for chunk in 0..<3 {
            var bits = 0
            for position in 0..<5 where characters[chunk * 5 + position].isUppercase {
                bits |= 1 << position
            }
            suffix.append(suffixAlphabet[bits])
        }
        return suffix
    }
}
