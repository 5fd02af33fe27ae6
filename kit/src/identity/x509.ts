// @peculiar/x509 resolves its parsers through tsyringe, which needs the Reflect metadata API
// installed before the library loads: kit imports the library only through this module.
import "reflect-metadata";

export * from "@peculiar/x509";
