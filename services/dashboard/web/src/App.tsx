import { NavLink, Route, Routes, useNavigate } from "react-router";
import { AnalyticsPage } from "./pages/Analytics.js";
import { AuditPage } from "./pages/Audit.js";
import { DeliveriesPage } from "./pages/Deliveries.js";
import { HealthPage } from "./pages/Health.js";
import { RoutesPage } from "./pages/Routes.js";
import { SignInPage } from "./pages/SignIn.js";
import { TaskPage } from "./pages/Task.js";
import { TasksPage } from "./pages/Tasks.js";
import { WorkersPage } from "./pages/Workers.js";

const SECTIONS = [
  { to: "/tasks", label: "Tasks" },
  { to: "/analytics", label: "Analytics" },
  { to: "/deliveries", label: "Deliveries" },
  { to: "/routes", label: "Routes" },
  { to: "/workers", label: "Workers" },
  { to: "/health", label: "Health" },
  { to: "/audit", label: "Audit" },
];

export function App() {
  const navigate = useNavigate();
  // The session cookie is HttpOnly, so only the server can end it.
  const signOut = async () => {
    await fetch("/logout", { method: "POST" });
    navigate("/login?signed-out");
  };
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">hookmesh</span>
        <nav aria-label="Sections">
          <ul>
            {SECTIONS.map((section) => (
              <li key={section.to}>
                <NavLink to={section.to}>{section.label}</NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <button type="button" className="sign-out" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main id="main">
        <Routes>
          <Route path="/" element={<TasksPage />} />
          <Route path="/tasks" element={<TasksPage />} />
          <Route path="/tasks/:id" element={<TaskPage />} />
          <Route path="/analytics" element={<AnalyticsPage />} />
          <Route path="/deliveries" element={<DeliveriesPage />} />
          <Route path="/routes" element={<RoutesPage />} />
          <Route path="/workers" element={<WorkersPage />} />
          <Route path="/health" element={<HealthPage />} />
          <Route path="/audit" element={<AuditPage />} />
          <Route path="/login" element={<SignInPage />} />
          <Route path="*" element={<p>There is no such page. Pick a section above.</p>} />
        </Routes>
      </main>
    </>
  );
}
