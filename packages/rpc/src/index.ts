/**
 * RPC contracts shared by master, agent and CLI, with auth and the HTTPS transport, and the
 * runtime the three programs share: the daemon process, keyed actors, fatal failures, the
 * journaled saga with its SQL journal, the event log and rows read through Schemas.
 */
export * as Audit from "./Audit.js"
export * as Authenticator from "./Authenticator.js"
export * as AuthMiddleware from "./AuthMiddleware.js"
export * from "./Contracts.js"
export * as Daemon from "./Daemon.js"
export * as EventLog from "./EventLog.js"
export * as Failures from "./Failures.js"
export * as HttpAuthenticator from "./HttpAuthenticator.js"
export * as KeyedActors from "./KeyedActors.js"
export * as Pki from "./Pki.js"
export * as Principal from "./Principal.js"
export * as Protocol from "./Protocol.js"
export * as Saga from "./Saga.js"
export * as SagaJournal from "./SagaJournal.js"
export * as SecretFile from "./SecretFile.js"
export * as ServerIdentity from "./ServerIdentity.js"
export * as SqliteFile from "./SqliteFile.js"
export * as SqlRows from "./SqlRows.js"
export * as TokenFile from "./TokenFile.js"
export * as TokenFileAuthenticator from "./TokenFileAuthenticator.js"
export * as Transport from "./Transport.js"
export * as TransportClient from "./TransportClient.js"
