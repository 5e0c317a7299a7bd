import Config
import CRM
import Foundation
import Graph
import HTTP
import Services
import Testing
import TestSupport
import Writeback

/// Link updates and column stamping against the sandbox: repeated steps leave one link.
@Suite("links to records and stamped columns")
struct LinkerTests {
    func withLinker(_ body: (Linker, Connections, String) async throws -> Void) async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let connections = try sandbox.connections()
            try await body(Linker(graph: connections.graph, salesforce: connections.salesforce), connections, try await sandbox.info()["driveId"]!)
        }
    }

    @Test("a record's folder is made once, parents included, however often it is asked for")
    func folders() async throws {
        try await withLinker { linker, connections, driveID in
            let first = try await linker.ensureFolder(driveID: driveID, path: "Accounts/New Customer (001X)/Contracts")
            let again = try await linker.ensureFolder(driveID: driveID, path: "Accounts/New Customer (001X)/Contracts")
            #expect(first == again)
            #expect(try await connections.graph.item(driveID: driveID, path: "Accounts/New Customer (001X)/Contracts").id == first)
        }
    }

    @Test("link-object and files-connect links are made once, however often the step runs")
    func idempotentLinks() async throws {
        try await withLinker { linker, connections, driveID in
            let salesforce = connections.salesforce
            let account = try #require(try await salesforce.query("SELECT Id FROM Account LIMIT 1").first?.id)
            let document = try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            for _ in 0..<2 {
                try await linker.link(document, driveID: driveID, recordID: account, objectName: "Account", model: .linkObject)
                try await linker.link(document, driveID: driveID, recordID: account, objectName: "Account", model: .filesConnect)
            }
            let rows = try await salesforce.query("SELECT Id, Record_Id__c, Web_Url__c FROM SharePoint_Document__c WHERE Item_Id__c = '\(document.id)'")
            #expect(rows.count == 1)
            #expect(rows.first?["Record_Id__c"]?.stringValue == account)
            #expect(rows.first?["Web_Url__c"]?.stringValue == document.webUrl)
            let versions = try await salesforce.query("SELECT Id, ContentDocumentId FROM ContentVersion WHERE ExternalDocumentInfo2 = '\(document.id)'")
            #expect(versions.count == 1)
            let links = try await salesforce.query("SELECT Id FROM ContentDocumentLink WHERE LinkedEntityId = '\(account)'")
            #expect(links.count == 1)

            // Moved to another record: the document gains a link to it, still one version.
            let other = try #require(try await salesforce.query("SELECT Id FROM Account WHERE Id != '\(account)' LIMIT 1").first?.id)
            try await linker.link(document, driveID: driveID, recordID: other, objectName: "Account", model: .filesConnect)
            #expect(try await salesforce.query("SELECT Id FROM ContentDocumentLink WHERE LinkedEntityId = '\(other)'").count == 1)
            #expect(try await salesforce.query("SELECT Id FROM ContentVersion WHERE ExternalDocumentInfo2 = '\(document.id)'").count == 1)
        }
    }

    @Test("mapped CRM fields become column values through their transforms")
    func stamping() async throws {
        let mappings = [
            FieldMapping(crmField: "Name", spColumn: "Customer"),
            FieldMapping(crmField: "Id", spColumn: "RecordId", transform: .lookupID),
            FieldMapping(crmField: "Amount", spColumn: "Amount", transform: .number),
            FieldMapping(crmField: "CloseDate", spColumn: "ExpiresOn", transform: .date),
            FieldMapping(crmField: "Account.Name", spColumn: "DealIdentifier"),
            FieldMapping(crmField: "Missing__c", spColumn: "CaseNumber"),
        ]
        let record: [String: JSONValue] = ["Id": "006AAA", "Name": "Acme renewal", "Amount": 1200, "CloseDate": "2026-03-31",
                                           "Account": ["Name": "Acme Corp"]]
        let values = ColumnStamping.values(for: mappings, record: record)
        #expect(values == ["Customer": "Acme renewal", "RecordId": "006AAA", "Amount": 1200, "ExpiresOn": "2026-03-31T00:00:00Z",
                           "DealIdentifier": "Acme Corp"])
        try await withLinker { _, connections, driveID in
            let document = try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            let written = try await connections.graph.updateFields(driveID: driveID, itemID: document.id, fields: values)
            #expect(written["ExpiresOn"]?.stringValue == "2026-03-31T00:00:00Z")
            #expect(written["Amount"]?.doubleValue == 1200)
        }
    }
}
