import { useSearchParams } from "react-router";
import { PageHeader } from "../components.js";

/**
 * Where the dashboard sends a browser whose sign-in link was used, expired or never valid, and
 * where signing out ends. Signing in is a one-time URL that the operator's CLI prints.
 */
export function SignInPage() {
  const [params] = useSearchParams();
  const error = params.get("error");
  return (
    <>
      <PageHeader title="Sign in" />
      {error === "expired" && (
        <p role="alert" className="error">
          That sign-in link was already used or has expired.
        </p>
      )}
      {params.has("signed-out") && <p role="status">You are signed out.</p>}
      <section className="card">
        <p>The dashboard signs a browser in through a one-time link. Run, where your operator identity is:</p>
        <pre>npx hookmesh dashboard</pre>
        <p>and open the URL it prints (it works once, within a few minutes).</p>
      </section>
    </>
  );
}
