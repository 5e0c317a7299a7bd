import CRM
import Foundation
import HTTP
import Services
import Testing
import TestSupport

/// Record writes through the Salesforce client against the sandbox: what link updates will use.
@Suite("Salesforce record writes against the sandbox")
struct SalesforceWriteTests {
    @Test("a link row is upserted by its item id: the same upsert twice leaves one row")
    func upsertIsIdempotent() async throws {
        try await withSandbox(records: 2, docsPerRecord: 0) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            let account = try #require(try await salesforce.query("SELECT Id FROM Account LIMIT 1").first?.id)
            let fields: [String: JSONValue] = ["Name": "MSA-2026.pdf", "Record_Id__c": .string(account), "Object_Type__c": "Account",
                                               "Drive_Id__c": "b!drive", "Web_Url__c": "https://contoso.sharepoint.com/x", "Size__c": 1234]
            let first = try await salesforce.upsert("SharePoint_Document__c", externalIDField: "Item_Id__c", value: "01ABC/+=", fields: fields)
            #expect(first.created)
            let second = try await salesforce.upsert("SharePoint_Document__c", externalIDField: "Item_Id__c", value: "01ABC/+=",
                                                     fields: ["Name": "Renamed.pdf", "Size__c": 99])
            #expect(!second.created)
            #expect(second.id == first.id)
            let rows = try await salesforce.query("SELECT Id, Name, Item_Id__c, Size__c FROM SharePoint_Document__c")
            #expect(rows.count == 1)
            #expect(rows.first?["Name"]?.stringValue == "Renamed.pdf")
            #expect(rows.first?["Item_Id__c"]?.stringValue == "01ABC/+=")
            #expect(rows.first?["Size__c"]?.doubleValue == 99)
            let stats = try await sandbox.stats()
            #expect(stats["sf.create"] == 1)
            #expect(stats["sf.update"] == 1)
        }
    }

    @Test("create, update and delete; a repeated delete is harmless; bad fields come back as the service's errors")
    func crud() async throws {
        try await withSandbox(records: 2, docsPerRecord: 0) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            let account = try #require(try await salesforce.query("SELECT Id FROM Account LIMIT 1").first?.id)
            let id = try await salesforce.create("SharePoint_Document__c", fields: ["Name": "a.pdf", "Item_Id__c": "01X", "Record_Id__c": .string(account)])
            try await salesforce.update("SharePoint_Document__c", id: id, fields: ["Name": "b.pdf"])
            #expect(try await salesforce.record("SharePoint_Document__c", id: id)["Name"]?.stringValue == "b.pdf")

            await #expect(throws: SalesforceError.self) {
                _ = try await salesforce.create("SharePoint_Document__c", fields: ["Name": "c.pdf", "Item_Id__c": "01X"])  // unique
            }
            do {
                _ = try await salesforce.create("SharePoint_Document__c", fields: ["Nmae": "typo.pdf"])
                Issue.record("an unknown field was accepted")
            } catch let error as SalesforceError {
                #expect(error.status == 400)
                #expect(error.code == "INVALID_FIELD")
                #expect(error.errors.first?.fields == ["Nmae"])
            }
            do {
                _ = try await salesforce.create("SharePoint_Document__c", fields: ["Item_Id__c": "01Y"])
                Issue.record("a missing required field was accepted")
            } catch let error as SalesforceError {
                #expect(error.code == "REQUIRED_FIELD_MISSING")
            }

            try await salesforce.delete("SharePoint_Document__c", id: id)
            try await salesforce.delete("SharePoint_Document__c", id: id)
            #expect(try await salesforce.query("SELECT Id FROM SharePoint_Document__c").isEmpty)
            #expect(try await salesforce.query("SELECT Id FROM SharePoint_Document__c", includeDeleted: true).count == 1)
            #expect(try await sandbox.stats()["sf.delete"] == 1)
        }
    }

    @Test("a composite request chains references; with allOrNone a failure undoes the earlier writes")
    func composite() async throws {
        try await withSandbox(records: 2, docsPerRecord: 0) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            let account = try #require(try await salesforce.query("SELECT Id FROM Account LIMIT 1").first?.id)
            let base = "/services/data/v\(salesforce.apiVersion)/sobjects"
            let results = try await salesforce.composite([
                CompositeSubrequest(method: "POST", url: "\(base)/SharePoint_Document__c", referenceID: "doc",
                                    body: ["Name": "a.pdf", "Item_Id__c": "01A", "Record_Id__c": .string(account)]),
                CompositeSubrequest(method: "PATCH", url: "\(base)/SharePoint_Document__c/@{doc.id}", referenceID: "rename", body: ["Name": "b.pdf"]),
                CompositeSubrequest(method: "GET", url: "\(base)/SharePoint_Document__c/@{doc.id}", referenceID: "read"),
            ], allOrNone: true)
            #expect(results.map(\.httpStatusCode) == [201, 204, 200])
            #expect(results[2].body?["Name"]?.stringValue == "b.pdf")
            let document = try #require(results[0].body?["id"]?.stringValue)

            let undone = try await salesforce.composite([
                CompositeSubrequest(method: "POST", url: "\(base)/SharePoint_Document__c", referenceID: "second",
                                    body: ["Name": "c.pdf", "Item_Id__c": "01B"]),
                CompositeSubrequest(method: "PATCH", url: "\(base)/SharePoint_Document__c/\(document)", referenceID: "renameAgain", body: ["Nmae": "typo"]),
            ], allOrNone: true)
            #expect(undone.map(\.httpStatusCode) == [400, 400])
            #expect(undone[0].body?.arrayValue?.first?["errorCode"]?.stringValue == "PROCESSING_HALTED")
            #expect(undone[1].body?.arrayValue?.first?["errorCode"]?.stringValue == "INVALID_FIELD")
            let rows = try await salesforce.query("SELECT Name FROM SharePoint_Document__c")
            #expect(rows.compactMap { $0["Name"]?.stringValue } == ["b.pdf"])  // c.pdf was rolled back
            #expect(try await sandbox.stats()["sf.composite"] == 2)
        }
    }

    @Test("a composite holds at most 5 queries: the sandbox refuses a sixth, and the client sends 12 queries as 3 calls")
    func compositeQueryLimit() async throws {
        try await withSandbox(records: 2, docsPerRecord: 0) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            let query = "/services/data/v\(salesforce.apiVersion)/query?q=SELECT+Id+FROM+Account"
            await #expect(throws: SalesforceError.self) {
                try await salesforce.composite((0..<6).map { CompositeSubrequest(method: "GET", url: query, referenceID: "q\($0)") }, allOrNone: false)
            }
            try await sandbox.admin("stats/reset")
            let answers = try await salesforce.queries((0..<12).map { _ in RecordQuery("SELECT Id FROM Account") })
            #expect(answers.count == 12 && answers.allSatisfy { $0.count == 2 })
            #expect(try await sandbox.stats()["sf.composite"] == 3)
        }
    }

    @Test("an external ContentVersion creates its ContentDocument and, with FirstPublishLocationId, the link to the record")
    func filesConnect() async throws {
        try await withSandbox(records: 2, docsPerRecord: 0) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            let account = try #require(try await salesforce.query("SELECT Id FROM Account LIMIT 1").first?.id)
            let source = try #require(try await salesforce.query("SELECT Id FROM ExternalDataSource").first?.id)
            let version = try await salesforce.create("ContentVersion", fields: [
                "Title": "MSA-2026.pdf", "PathOnClient": "MSA-2026.pdf", "ContentLocation": "E", "ExternalDataSourceId": .string(source),
                "ExternalDocumentInfo1": "https://contoso.sharepoint.com/sites/Sales/Documents/MSA-2026.pdf", "ExternalDocumentInfo2": "01ITEM",
                "FirstPublishLocationId": .string(account),
            ])
            let document = try #require(try await salesforce.record("ContentVersion", id: version)["ContentDocumentId"]?.stringValue)
            let links = try await salesforce.query("SELECT Id, ContentDocumentId, ShareType FROM ContentDocumentLink WHERE LinkedEntityId = '\(account)'")
            #expect(links.count == 1)
            #expect(links.first?["ContentDocumentId"]?.stringValue == document)
            #expect(links.first?["ShareType"]?.stringValue == "I")
        }
    }
}
