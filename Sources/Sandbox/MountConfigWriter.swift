import Foundation

/// Writes a mount.conf that points crmfs at this sandbox, with the tenant's secrets in 0600 files beside it.
struct MountConfigWriter {
    let app: SandboxApp
    let baseURL: String
    let directory: URL
    /// The sandbox's CA file (relative to the config), when it serves HTTPS.
    var certificateAuthority: String? = nil

    /// `ca_file = "ca.pem"` when the sandbox serves HTTPS with its own CA.
    private var caLine: String { certificateAuthority.map { "ca_file = \"\($0)\"" } ?? "" }

    func write() throws -> URL {
        let secrets = directory.appendingPathComponent("secrets")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let credentials = app.credentials
        try writeSecret(credentials.graphClientSecret, to: secrets.appendingPathComponent("graph-client-secret"))
        try writeSecret(credentials.salesforceClientSecret, to: secrets.appendingPathComponent("salesforce-client-secret"))
        try writeSecret(credentials.salesforceRefreshToken, to: secrets.appendingPathComponent("salesforce-refresh-token"))

        var text = """
            # crmfs mount configuration for the sandbox tenant, written by `crmfs sandbox`.
            # Paths are relative to this file. See mount.conf.example for every key.

            [salesforce]
            instance_url = "\(baseURL)"
            api_version = "62.0"
            auth = "client_credentials"
            client_id = "\(credentials.salesforceClientID)"
            client_secret_file = "secrets/salesforce-client-secret"
            \(caLine)

            [graph]
            authority = "\(baseURL)"
            endpoint = "\(baseURL)/v1.0"
            tenant = "\(credentials.tenantID)"
            client_id = "\(credentials.graphClientID)"
            client_secret_file = "secrets/graph-client-secret"
            site = "contoso.sharepoint.com:/sites/Sales"
            library = "Documents"
            # The sandbox's budget (--ru-per-minute); 0: it has none, so crmfs need not pace itself.
            ru_per_minute = \(app.options.resourceUnitsPerMinute)
            \(caLine)

            [cache]
            directory = "crmfs-state"
            size = "1GiB"
            block_size = "4MiB"

            """
        for entry in RecordFolders.objects {
            text += """

                [[objects]]
                object = "\(entry.object)"
                directory = "\(entry.directory)"
                name = "\(entry.nameTemplate)"
                fields = [\(fields(for: entry.object).map { "\"\($0)\"" }.joined(separator: ", "))]
                link = "folder"
                folder = "\(entry.folderTemplate)"

                """
            for (crmField, column) in mappings(for: entry.object) {
                text += """

                    [[objects.mappings]]
                    crm_field = "\(crmField)"
                    sp_column = "\(column)"

                    """
            }
        }
        let url = directory.appendingPathComponent("mount.conf")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    private func fields(for object: String) -> [String] {
        switch object {
        case "Account": return ["Name", "AccountNumber", "Industry", "Type", "BillingCity", "BillingCountry", "Phone", "Website", "AnnualRevenue", "LastModifiedDate"]
        case "Opportunity": return ["Name", "OpportunityNumber__c", "AccountId", "StageName", "Amount", "CloseDate", "Probability", "LastModifiedDate"]
        default: return ["CaseNumber", "Subject", "Status", "Priority", "Origin", "AccountId", "LastModifiedDate"]
        }
    }

    private func mappings(for object: String) -> [(String, String)] {
        switch object {
        case "Account": return [("Name", "Customer"), ("Id", "RecordId")]
        case "Opportunity": return [("OpportunityNumber__c", "DealIdentifier"), ("Id", "RecordId")]
        default: return [("CaseNumber", "CaseNumber"), ("Id", "RecordId")]
        }
    }

    /// Created 0600 from the start, so the secret is never readable by others, not even briefly.
    private func writeSecret(_ value: String, to url: URL) throws {
        unlink(url.path)
        let descriptor = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: url.path]) }
        defer { close(descriptor) }
        let bytes = Array(value.utf8)  // no newline: `curl --data-urlencode name@file` sends the file as it is
        guard bytes.withUnsafeBytes({ Foundation.write(descriptor, $0.baseAddress, $0.count) }) == bytes.count else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
        }
    }
}
