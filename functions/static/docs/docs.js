// Starts Swagger UI on this app's own document. Kept out of the page: its Content-Security-Policy
// allows scripts from this app only, never inline ones.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Swagger UI would otherwise send the document to validator.swagger.io for a badge.
    validatorUrl: null,
  });
});
