import CRM
import Foundation
import Services
import Testing
import TestSupport

@Suite("Salesforce client against the sandbox")
struct SalesforceClientTests {
    @Test("a query pages through nextRecordsUrl: 5,000 records in batches of 2,000")
    func queryPaging() async throws {
        try await withSandbox(records: 5000, docsPerRecord: 0) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            try await sandbox.admin("stats/reset")
            let records = try await salesforce.query("SELECT Id, Name FROM Account ORDER BY Name")
            #expect(records.count == 5000)
            #expect(Set(records.compactMap(\.id)).count == 5000)
            #expect(records.allSatisfy { $0.type == "Account" && $0["Name"]?.stringValue?.isEmpty == false })
            let names = records.compactMap { $0["Name"]?.stringValue }
            #expect(names == names.sorted { $0.compare($1, options: .caseInsensitive) != .orderedDescending })
            #expect(try await sandbox.stats()["sf.query"] == 3)
            #expect(salesforce.lastLimitInfo?.hasPrefix("api-usage=") == true)

            var pageSizes: [Int] = []
            for try await page in salesforce.queryPages("SELECT Id FROM Account", batchSize: 500) { pageSizes.append(page.records.count) }
            #expect(pageSizes == Array(repeating: 500, count: 10))
        }
    }

    @Test("filters, relationships, describe and single records")
    func queriesAndRecords() async throws {
        try await withSandbox(records: 40) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            let acme = try await salesforce.query("SELECT Id, Name, Industry FROM Account WHERE Name = 'acme corp'")
            #expect(acme.map(\.id) == [SeededPaths.acmeID])
            let renewal = try await salesforce.query("SELECT Name, OpportunityNumber__c, Account.Name FROM Opportunity WHERE OpportunityNumber__c = 'OPP-1024'")
            #expect(renewal.first?["Name"]?.stringValue == "Acme renewal")
            #expect(renewal.first?["Account.Name"]?.stringValue == "Acme Corp")
            let jam = try await salesforce.query("SELECT CaseNumber, Subject FROM Case WHERE CaseNumber = '00001026'")
            #expect(jam.first?["Subject"]?.stringValue == "Printer jam")
            let like = try await salesforce.query("SELECT Id FROM Account WHERE Name LIKE 'Northwind%'")
            #expect(like.count == 2)  // two records share the name
            let count = try await salesforce.query("SELECT Id FROM Account WHERE (Industry = 'Technology' OR Industry = 'Finance') AND NOT Name = 'Acme Corp'")
            #expect(count.count > 0 && count.count < 40)
            let slash = try await salesforce.query("SELECT Name FROM Account WHERE Name IN ('Smith/Wesson Partners', 'Contoso: EMEA')")
            #expect(slash.count == 2)

            let describe = try await salesforce.describe("Account")
            #expect(describe.field("Name")?.type == "string")
            #expect(describe.field("Id")?.updateable == false)
            let record = try await salesforce.record("Account", id: SeededPaths.acmeID, fields: ["Name", "BillingCity"])
            #expect(record["Name"]?.stringValue == "Acme Corp")
            #expect(record.type == "Account")
        }
    }

    @Test("the service's error array becomes typed errors")
    func errors() async throws {
        try await withSandbox { sandbox in
            let salesforce = try sandbox.connections().salesforce
            await expectCode("MALFORMED_QUERY") { _ = try await salesforce.query("SELEKT Id FROM Account") }
            await expectCode("INVALID_TYPE") { _ = try await salesforce.query("SELECT Id FROM Acount") }
            await expectCode("INVALID_FIELD") { _ = try await salesforce.query("SELECT Nmae FROM Account") }
            await expectCode("NOT_FOUND") { _ = try await salesforce.record("Account", id: "001000000000000AAA") }
        }
    }

    @Test("the daily API limit answers 403 REQUEST_LIMIT_EXCEEDED, which is not retried")
    func dailyLimit() async throws {
        try await withSandbox(configure: { $0.salesforceDailyLimit = 2 }) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            _ = try await salesforce.query("SELECT Id FROM Account LIMIT 1")
            _ = try await salesforce.query("SELECT Id FROM Account LIMIT 1")
            await expectCode("REQUEST_LIMIT_EXCEEDED") { _ = try await salesforce.query("SELECT Id FROM Account LIMIT 1") }
            #expect(try await sandbox.stats()["sf.query"] == 2)
        }
    }

    private func expectCode(_ code: String, _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("expected \(code)")
        } catch let error as SalesforceError {
            #expect(error.code == code, "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
