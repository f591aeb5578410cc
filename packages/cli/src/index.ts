export { validateFile, formatReport } from "./commands/Validate.js"
