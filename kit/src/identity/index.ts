export {
  devIdentityFiles,
  ensureDevIdentities,
  type DevFileStatus,
  type DevIdentities,
  type DevIdentity,
  type DevIdentityOptions,
} from "./dev.js";
export {
  clientTlsOptions,
  openIdentity,
  ServerIdentityError,
  serverIdentityCheck,
  type ClientTlsOptions,
  type Identity,
  type OpenIdentityOptions,
} from "./identity.js";
export { IdentityError, type IdentityFiles, type IdentityMaterial } from "./material.js";
export { spiffeId } from "./spiffe.js";
