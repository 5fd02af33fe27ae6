export {
  type DevFileStatus,
  type DevIdentities,
  type DevIdentity,
  type DevIdentityOptions,
  devIdentityFiles,
  ensureDevIdentities,
} from "./dev.js";
export {
  type ClientTlsOptions,
  clientTlsOptions,
  type Identity,
  type OpenIdentityOptions,
  openIdentity,
  ServerIdentityError,
  serverIdentityCheck,
} from "./identity.js";
export { IdentityError, type IdentityFiles, type IdentityMaterial } from "./material.js";
export { spiffeId } from "./spiffe.js";
