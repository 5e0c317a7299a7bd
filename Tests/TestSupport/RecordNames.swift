import CRM
import Namespace

/// The record directory names crmfs promises for an object, worked out from the records themselves.
public enum RecordNames {
    public static func expected(_ salesforce: SalesforceClient, object: String, template: String) async throws -> Set<String> {
        let fields = ["Id"] + Template(template).fields
        let records = try await salesforce.query("SELECT \(fields.joined(separator: ", ")) FROM \(object)")
        let names = EntryNaming.names(for: records.map { record in
            (id: record.id!, base: Template(template).expand { record[$0]?.description ?? "" })
        })
        return Set(names.values)
    }
}
