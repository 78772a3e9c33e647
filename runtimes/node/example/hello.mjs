export const handler = async (event, context) => {
  const name = (event && event.name) || "world";
  console.log(`greeting ${name}`);
  return { message: `Hello, ${name}!`, runtime: "node", request_id: context.awsRequestId };
};
