/** RPC contracts shared by master, agent and CLI, with auth and the HTTPS transport. */
export * as Authenticator from "./Authenticator.js"
export * as AuthMiddleware from "./AuthMiddleware.js"
export * from "./Contracts.js"
export * as Principal from "./Principal.js"
export * as Protocol from "./Protocol.js"
export * as Transport from "./Transport.js"
